//! Classification of free text: built-in detectors that find personal data
//! inside `scan: true` fields (SPEC §2, "Scanned fields").
//!
//! Every detector is a linear-time regular expression (the `regex` crate
//! guarantees it) followed by a validator (Luhn, mod-97, address parsing) that
//! keeps false positives down, so scanning stays linear in the input size.
//! Detection never allocates the matched text and never logs it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Detector {
    Email,
    Card,
    Iban,
    UsSsn,
    Ipv6,
    Ipv4,
    Phone,
}

impl Detector {
    /// All detectors, in priority order: where matches overlap, the earlier wins.
    pub const ALL: [Detector; 7] = [
        Detector::Email,
        Detector::Card,
        Detector::Iban,
        Detector::UsSsn,
        Detector::Ipv6,
        Detector::Ipv4,
        Detector::Phone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::Ipv6 => "ipv6",
            Detector::Ipv4 => "ipv4",
            Detector::Phone => "phone",
        }
    }

    /// The class a match of this detector has.
    pub fn class(self) -> &'static str {
        match self {
            Detector::Email => "pii.contact.email",
            Detector::Card => "pii.financial.card",
            Detector::Iban => "pii.financial.bank_account",
            Detector::UsSsn => "pii.identifier.national_id",
            Detector::Ipv6 | Detector::Ipv4 => "pii.identifier.ip_address",
            Detector::Phone => "pii.contact.phone",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A set of detectors (a bit per [`Detector::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DetectorSet(u8);

impl DetectorSet {
    pub fn single(d: Detector) -> Self {
        DetectorSet(1 << d.index())
    }
    pub fn contains(self, d: Detector) -> bool {
        self.0 & (1 << d.index()) != 0
    }
    pub fn insert(&mut self, d: Detector) {
        self.0 |= 1 << d.index();
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The detectors in the set, in [`Detector::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

/// A detected span of personal data: byte range in the scanned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The highest-priority detector of the span.
    pub detector: Detector,
    /// Every detector whose finding was merged into this span.
    pub detectors: DetectorSet,
}

/// Detects personal data in a JSON number's raw text; numbers written in
/// exponent form are expanded first, and any finding is one span over the
/// whole text.
pub fn detect_number(raw: &str, out: &mut Vec<Span>) {
    out.clear();
    if !raw.contains(['e', 'E', '.']) {
        detect_into(raw, out);
        return;
    }
    let Some(expanded) = crate::state::canonical_number(raw) else {
        return;
    };
    let digits: String = expanded.chars().filter(char::is_ascii_digit).collect();
    let found = detect(&digits);
    if let Some(first) = found.first() {
        let mut detectors = DetectorSet::default();
        for s in &found {
            for d in s.detectors.iter() {
                detectors.insert(d);
            }
        }
        out.push(Span {
            start: 0,
            end: raw.len(),
            detector: first.detector,
            detectors,
        });
    }
}

struct Patterns {
    /// One regex per entry of [`SOURCES`].
    res: Vec<Regex>,
    /// All of them in one automaton: one pass tells which can match at all.
    set: RegexSet,
}

const EMAIL: usize = 0;
const CARD: usize = 1;
const IBAN: usize = 2;
const SSN: usize = 3;
const IPV6: usize = 4;
const IPV4: usize = 5;
const PHONE_INTL: usize = 6;
const PHONE_NANP: usize = 7;
const PHONE_TRUNK: usize = 8;

const SOURCES: [&str; 9] = [
    r"(?i)(?-u:\b)[a-z0-9._%+\-]{1,64}@[a-z0-9](?:[a-z0-9\-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,62}[a-z0-9])?)*\.[a-z]{2,24}(?-u:\b)",
    r"(?-u:\b)[2-6][0-9](?:[ \-]?[0-9]){11,17}(?-u:\b)",
    r"(?i)(?-u:\b)[a-z]{2}[0-9]{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?(?-u:\b)",
    r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
    r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?|::",
    r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
    r"\+[0-9]{1,3}(?:[ .\-]?\(?[0-9]{1,4}\)?){1,6}(?-u:\b)",
    r"(?:(?-u:\b)1[ .\-])?(?:\([0-9]{3}\) ?|(?-u:\b)[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}(?-u:\b)",
    r"(?-u:\b)0[1-9][0-9]{0,3}(?:[ .\-][0-9]{2,4}){2,4}(?-u:\b)",
];

// ASCII word boundaries ((?-u:\b)) keep the lazy DFA usable on any input.
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    res: SOURCES
        .iter()
        .map(|src| Regex::new(src).expect("built-in detector pattern is valid"))
        .collect(),
    set: RegexSet::new(SOURCES).expect("built-in detector patterns are valid"),
});

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
}

/// Luhn checksum over the digits of `s`.
pub fn luhn_valid(s: &str) -> bool {
    let ds: Vec<u32> = digits(s).collect();
    if ds.len() < 12 {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// ISO 13616 mod-97 check of an IBAN (spaces allowed).
pub fn iban_valid(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len()) || !compact[..2].iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_valid(s: &str) -> bool {
    let area = &s[0..3];
    let group = &s[4..6];
    let serial = &s[7..11];
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn card_valid(s: &str) -> bool {
    // Separators must be used consistently: groups split by one kind of separator.
    let has_space = s.contains(' ');
    let has_dash = s.contains('-');
    if has_space && has_dash {
        return false;
    }
    let ds: Vec<u32> = digits(s).collect();
    (12..=19).contains(&ds.len()) && iin_fits(&ds) && luhn_valid(s)
}

/// Does the number's issuer prefix fit its length (Visa 13/16/19, Amex 15, …)?
fn iin_fits(ds: &[u32]) -> bool {
    let n = ds.len();
    let prefix = |k: usize| ds[..k].iter().fold(0u32, |a, d| a * 10 + d);
    match ds[0] {
        4 => matches!(n, 13 | 16 | 19),
        2 => {
            (2221..=2720).contains(&prefix(4)) && n == 16
                || (2200..=2204).contains(&prefix(4)) && (16..=19).contains(&n)
        }
        3 => match prefix(2) {
            34 | 37 => n == 15,
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n),
            36 | 38 | 39 => (14..=19).contains(&n),
            30 => (300..=305).contains(&prefix(3)) && (14..=19).contains(&n),
            _ => false,
        },
        5 => match prefix(2) {
            51..=55 => n == 16,
            50 | 56..=59 => (12..=19).contains(&n),
            _ => false,
        },
        6 => (12..=19).contains(&n),
        _ => false,
    }
}

/// National numbers are written with one kind of separator (`020 7946 0958`).
fn one_separator(s: &str) -> bool {
    let mut seps = s.bytes().filter(|b| !b.is_ascii_digit());
    match seps.next() {
        None => true,
        Some(first) => seps.all(|b| b == first),
    }
}

fn phone_valid(s: &str, min_digits: usize) -> bool {
    let n = digits(s).count();
    (min_digits..=15).contains(&n)
}

/// Finds every span of personal data in `text`, sorted by position, never overlapping.
pub fn detect(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    detect_into(text, &mut out);
    out
}

/// Like [`detect`], reusing `out`'s allocation.
pub fn detect_into(text: &str, out: &mut Vec<Span>) {
    out.clear();
    // Cheap pre-checks: most free text has no '@', few digits, no ':'.
    let bytes = text.as_bytes();
    let has_at = memchr(b'@', bytes);
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_colon = memchr(b':', bytes);
    if !has_at && !has_digit && !has_colon {
        return;
    }
    let p = &*PATTERNS;
    let mut cands: Vec<Span> = Vec::new();
    let hits = p.set.matches(text);
    if !hits.matched_any() {
        return;
    }
    let push = |i: usize, det: Detector, valid: &dyn Fn(&str) -> bool, cands: &mut Vec<Span>| {
        if !hits.matched(i) {
            return;
        }
        for m in p.res[i].find_iter(text) {
            if valid(m.as_str()) {
                cands.push(Span {
                    start: m.start(),
                    end: m.end(),
                    detector: det,
                    detectors: DetectorSet::single(det),
                });
            }
        }
    };
    if has_at {
        push(EMAIL, Detector::Email, &|_| true, &mut cands);
    }
    // Each detector needs a minimum of digits and certain punctuation; one
    // pass over the bytes tells which regexes can possibly match.
    let (mut ndigits, mut dash, mut dot, mut plus, mut zero) = (0usize, false, false, false, false);
    for &b in bytes {
        match b {
            b'0' => {
                ndigits += 1;
                zero = true;
            }
            b'1'..=b'9' => ndigits += 1,
            b'-' => dash = true,
            b'.' => dot = true,
            b'+' => plus = true,
            _ => {}
        }
    }
    if has_digit {
        if ndigits >= 12 {
            push(CARD, Detector::Card, &card_valid, &mut cands);
        }
        if ndigits >= 2 && bytes.len() >= 15 {
            push(IBAN, Detector::Iban, &iban_valid, &mut cands);
        }
        if dash && ndigits >= 9 {
            push(SSN, Detector::UsSsn, &ssn_valid, &mut cands);
        }
        if dot && ndigits >= 4 {
            push(
                IPV4,
                Detector::Ipv4,
                &|s| s.parse::<Ipv4Addr>().is_ok(),
                &mut cands,
            );
        }
        if plus && ndigits >= 8 {
            push(
                PHONE_INTL,
                Detector::Phone,
                &|s| phone_valid(s, 8),
                &mut cands,
            );
        }
        if ndigits >= 10 {
            push(
                PHONE_NANP,
                Detector::Phone,
                &|s| phone_valid(s, 10),
                &mut cands,
            );
        }
        if zero && ndigits >= 9 {
            push(
                PHONE_TRUNK,
                Detector::Phone,
                &|s| phone_valid(s, 9) && one_separator(s),
                &mut cands,
            );
        }
        // A phone or card number is not a slice of a longer run of digit groups
        // (an IBAN or a reference written in groups).
        let sep = |b: u8| matches!(b, b' ' | b'-' | b'.');
        cands.retain(|c| {
            if !matches!(c.detector, Detector::Phone | Detector::Card) {
                return true;
            }
            // Only a separator of the kind used inside the match continues it.
            let inside = &bytes[c.start..c.end];
            let before = c.start >= 2
                && sep(bytes[c.start - 1])
                && inside.contains(&bytes[c.start - 1])
                && bytes[c.start - 2].is_ascii_digit();
            let after = c.end + 1 < bytes.len()
                && sep(bytes[c.end])
                && inside.contains(&bytes[c.end])
                && bytes[c.end + 1].is_ascii_digit();
            !before && !after
        });
        // A number right after '+' is a phone number, never a card.
        cands
            .retain(|c| c.detector != Detector::Card || c.start == 0 || bytes[c.start - 1] != b'+');
    }
    if has_colon {
        push(
            IPV6,
            Detector::Ipv6,
            &|s| s.bytes().any(|b| b.is_ascii_hexdigit()) && s.parse::<Ipv6Addr>().is_ok(),
            &mut cands,
        );
        // An IPv6 match must not sit inside a longer hex/colon run (e.g. a hash).
        cands.retain(|c| {
            c.detector != Detector::Ipv6
                || (!bytes
                    .get(c.end)
                    .is_some_and(|b| b.is_ascii_hexdigit() || *b == b':')
                    && !c
                        .start
                        .checked_sub(1)
                        .and_then(|i| bytes.get(i))
                        .is_some_and(|b| b.is_ascii_hexdigit() || *b == b':'))
        });
    }
    // Resolve overlaps: by start, then priority, then longer first.
    cands.sort_by_key(|c| (c.start, c.detector, std::cmp::Reverse(c.end)));
    for c in cands {
        match out.last() {
            Some(last) if c.start < last.end => {
                // Overlap: one span covering both, with the higher-priority
                // detector, so no part of either is left in clear text.
                let last_i = out.len() - 1;
                let mut detectors = last.detectors;
                detectors.insert(c.detector);
                let merged = Span {
                    start: last.start,
                    end: last.end.max(c.end),
                    detector: last.detector.min(c.detector),
                    detectors,
                };
                out[last_i] = merged;
            }
            _ => out.push(c),
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> bool {
    hay.contains(&needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[(&str, Detector)]) {
        let got: Vec<(&str, Detector)> = detect(text)
            .iter()
            .map(|s| (&text[s.start..s.end], s.detector))
            .collect();
        assert_eq!(got, expected, "in {text:?}");
    }

    #[test]
    fn emails() {
        check(
            "mail me at jane.doe+x@example.co.uk please",
            &[("jane.doe+x@example.co.uk", Detector::Email)],
        );
        check("not an email: a@b", &[]);
    }

    #[test]
    fn cards_with_separators_and_luhn() {
        check(
            "card 4111 1111 1111 1111 ok",
            &[("4111 1111 1111 1111", Detector::Card)],
        );
        check(
            "card 4111-1111-1111-1111",
            &[("4111-1111-1111-1111", Detector::Card)],
        );
        check(
            "amex 378282246310005",
            &[("378282246310005", Detector::Card)],
        );
        // 16 digits failing Luhn: an order number, not a card.
        check("order 4111111111111112", &[]);
        check("ref 1234567890123456", &[]);
    }

    #[test]
    fn ibans() {
        check(
            "pay to DE89 3704 0044 0532 0130 00 now",
            &[("DE89 3704 0044 0532 0130 00", Detector::Iban)],
        );
        check(
            "GB82WEST12345698765432",
            &[("GB82WEST12345698765432", Detector::Iban)],
        );
        check("DE89 3704 0044 0532 0130 01", &[]);
    }

    #[test]
    fn ssn() {
        check("ssn 123-45-6789.", &[("123-45-6789", Detector::UsSsn)]);
        check("ssn 000-45-6789 666-12-3456 912-12-3456", &[]);
    }

    #[test]
    fn ips() {
        check(
            "from 192.168.1.20 today",
            &[("192.168.1.20", Detector::Ipv4)],
        );
        check("bad 999.1.1.1", &[]);
        check(
            "v6 2001:db8::8a2e:370:7334 end",
            &[("2001:db8::8a2e:370:7334", Detector::Ipv6)],
        );
        check("at 10:30:00 sharp", &[]);
        check("mac aa:bb:cc:dd:ee:ff", &[]);
    }

    #[test]
    fn phones() {
        check(
            "call +44 20 7946 0958 now",
            &[("+44 20 7946 0958", Detector::Phone)],
        );
        check(
            "call +1 (415) 555-2671",
            &[("+1 (415) 555-2671", Detector::Phone)],
        );
        check("or (415) 555-2671", &[("(415) 555-2671", Detector::Phone)]);
        check("or 415-555-2671", &[("415-555-2671", Detector::Phone)]);
        check("uk 020 7946 0958", &[("020 7946 0958", Detector::Phone)]);
        check("+4915112345678", &[("+4915112345678", Detector::Phone)]);
        // Dates, times, amounts and plain numbers are not phones.
        check("on 2026-11-01 at 10:00 for 1234.50 qty 12345", &[]);
        check("order 1234567890", &[]);
    }

    #[test]
    fn overlaps_merge_and_trailing_numbers_do_not_hide_phones() {
        // Found in review: the phone's head must not stay in clear text.
        let text = "call +44 7946 10.1.2.3 now";
        let spans = detect(text);
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert!(spans[0].start <= 5 && spans[0].end >= 22, "{spans:?}");
        check(
            "call 415-555-0100 2 times",
            &[("415-555-0100", Detector::Phone)],
        );
    }

    #[test]
    fn mixed_text_in_order() {
        let text = "Jane (jane@example.com, +33 6 12 34 56 78) paid with 5555 5555 5555 4444 from 10.0.0.1";
        let got: Vec<Detector> = detect(text).iter().map(|s| s.detector).collect();
        assert_eq!(
            got,
            vec![
                Detector::Email,
                Detector::Phone,
                Detector::Card,
                Detector::Ipv4
            ]
        );
    }

    #[test]
    fn validators() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("GB83 WEST 1234 5698 7654 32"));
    }
}
