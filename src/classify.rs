//! Classification of free text: built-in detectors that find personal data
//! inside `scan: true` fields (SPEC §2, "Scanned fields").
//!
//! What it is for: given a string (or the raw text of a JSON number, see
//! [`detect_number`]), return the byte ranges that hold an e-mail address, a
//! phone number, a payment card number, an IBAN, an IP address or a US social
//! security number, each tagged with every detector that matched it.
//!
//! What it must never do: I/O, logging, or copying matched text anywhere but
//! small stack buffers (digits of a window, a JSON number's expansion); take more than linear time in the input size (the
//! regular expressions come from the `regex` crate, which guarantees linear
//! time, and every window search below is bounded by a small constant per
//! digit group); panic on any input, whatever its UTF-8 (spans always start
//! and end on char boundaries).
//!
//! How numbers are found. Cards, phones and SSNs are not found by one regular
//! expression each but by a validator-driven search: the text is cut into
//! *runs* of digit groups (digits separated by up to three of space, NBSP
//! U+00A0, narrow NBSP U+202F, `-`, `.`, `/`, `(`, `)`), and every window of
//! consecutive groups (at most eight groups) is tried against the
//! validators, longest first, so a valid number next to another number
//! (`qty 2 4111 1111 1111 1111`, `Call 020 7946 0958 2 times`) is still found
//! and covered exactly. A window is refused when the group next to it
//! continues its grouping (same separator and a group of four or more digits,
//! or of the same length, or a group glued to letters as in `DE89 3704`): it
//! is then a slice of a longer reference, not a number of its own.
//!
//! * Cards: 12-19 digits, issuer prefix (IIN) fitting the length, Luhn; one
//!   group, or groups of 3-6 digits after a first group of 4 (last group
//!   1-6), with one separator character used throughout. A number right
//!   after `+` is a phone, never a card.
//! * Phones, by shape rather than by a full numbering plan: international
//!   (`+` then 8-15 digits or `00` then 9-15, `(0)` allowed), NANP
//!   (`(415) 555-2671`, `1-415-555-2671`), national with trunk prefix `0` (9-12 digits, or a
//!   compact 10-11 digits: UK, DE, FR, IT, JP, AU, IN, BR landlines and
//!   mobiles), and the common national shapes without trunk prefix: ES/PL
//!   nine digits (`612 34 56 78`, `512 345 678`, `22 123 45 67`), IT mobiles
//!   (`333 123 4567`), IN mobiles (`98765 43210`), BR (`(11) 91234-5678`).
//!   Bare runs of digits without `+` or trunk `0` are never phones; nor is
//!   `dd dd yyyy…` (a date). Known ambiguity: `512 345 678` may be an amount
//!   written with space thousands separators; it is reported as a phone.
//! * US SSN: `123-45-6789` or `123 45 6789` (area not 000/666/9xx, group not
//!   00, serial not 0000). A bare nine-digit run is too ambiguous in general;
//!   it is accepted only when one of the keywords `ssn`, `ss#`, `social
//!   security` (any case) ends within 24 bytes before it.
//! * IBAN: country code, check digits, groups separated by nothing, spaces or
//!   dashes; ISO 13616 mod-97.
//! * E-mail: Unicode local part and domain (`jürgen@müller.de`), apostrophes
//!   inside the local part (`o'brien@example.com`), and the URL-encoded
//!   `%40` form of `@`.
//! * IPv4: a dotted quad of decimal octets (no leading zeros) that is not a
//!   slice of a longer dotted number (`1.3.6.1.4.1`) nor glued to a letter
//!   (`v1.2.3.4`), nor `0.x.x.x`, nor inside an IPv6 address. Known
//!   ambiguity: a four-part version number whose parts are all ≤ 255
//!   (`10.0.0.1`) cannot be told from an address and is reported as one;
//!   `10.0.19045.2965` is not an address.
//! * IPv6: parsed by the standard library, not part of a longer hex/colon
//!   run; after a label such as `ip:` the label is not part of the address.
//!
//! Overlapping candidates are merged into one span that keeps every detector
//! involved ([`Span::detectors`]), so the engine can apply the most
//! restrictive action.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

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

/// A set of detectors: one bit per [`Detector::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DetectorSet(u8);

impl DetectorSet {
    /// The empty set.
    pub const EMPTY: DetectorSet = DetectorSet(0);

    /// The set holding only `d`.
    pub fn single(d: Detector) -> Self {
        DetectorSet(1 << d.index())
    }

    pub fn contains(self, d: Detector) -> bool {
        self.0 & (1 << d.index()) != 0
    }

    pub fn insert(&mut self, d: Detector) {
        self.0 |= 1 << d.index();
    }

    /// Every detector of `other` added to this set.
    pub fn union(self, other: DetectorSet) -> Self {
        DetectorSet(self.0 | other.0)
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The detectors in the set, in [`Detector::ALL`] (priority) order.
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// The highest-priority detector of the set, if any.
    pub fn first(self) -> Option<Detector> {
        self.iter().next()
    }
}

impl FromIterator<Detector> for DetectorSet {
    fn from_iter<I: IntoIterator<Item = Detector>>(iter: I) -> Self {
        let mut s = DetectorSet::EMPTY;
        for d in iter {
            s.insert(d);
        }
        s
    }
}

/// A detected span of personal data: byte range in the scanned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The highest-priority detector among [`Span::detectors`].
    pub detector: Detector,
    /// Every detector whose match was merged into this span (contains `detector`).
    pub detectors: DetectorSet,
}

impl Span {
    fn new(start: usize, end: usize, detector: Detector) -> Self {
        Span {
            start,
            end,
            detector,
            detectors: DetectorSet::single(detector),
        }
    }
}

struct Patterns {
    /// E-mail with `@`: its literal lets the regex engine skip to each `@`.
    email: Regex,
    /// E-mail with the URL-encoded `%40`, run only when `%40` occurs.
    email_encoded: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

// Letters and digits of any script; lengths are checked after the match
// (counted repetitions of Unicode classes make the automaton too big).
const EMAIL_LOCAL: &str = r"[\p{L}\p{N}_%+\-][\p{L}\p{M}\p{N}_.%+\-'’]*";
const EMAIL_DOMAIN: &str =
    r"[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*(?:\.[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*)*\.\p{L}[\p{L}\p{M}]+";
// ASCII word boundaries ((?-u:\b)) keep the lazy DFA usable on any input.
const IBAN_SRC: &str =
    r"(?i)(?-u:\b)[a-z]{2}[0-9]{2}(?:[ \-]?[a-z0-9]{4}){2,7}(?:[ \-]?[a-z0-9]{1,3})?(?-u:\b)";
const IPV4_SRC: &str = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)";
const IPV6_SRC: &str =
    r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-f]{1,4})?|::";

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let re = |src: &str| Regex::new(src).expect("built-in detector pattern is valid");
    Patterns {
        email: re(&format!("{EMAIL_LOCAL}@{EMAIL_DOMAIN}")),
        email_encoded: re(&format!("{EMAIL_LOCAL}%40{EMAIL_DOMAIN}")),
        iban: re(IBAN_SRC),
        ipv4: re(IPV4_SRC),
        ipv6: re(IPV6_SRC),
    }
});

/// Luhn checksum over the digits of `s` (at least 12 digits).
pub fn luhn_valid(s: &str) -> bool {
    let (mut n, mut sum) = (0usize, 0u32);
    for b in s.bytes().rev().filter(u8::is_ascii_digit) {
        let d = u32::from(b - b'0');
        sum += if n % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        n += 1;
    }
    n >= 12 && sum % 10 == 0
}

fn luhn_digits(ds: &[u8]) -> bool {
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
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

/// ISO 13616 mod-97 check of an IBAN (spaces or dashes between groups allowed).
pub fn iban_valid(s: &str) -> bool {
    let mut compact = [0u8; 34];
    let mut n = 0;
    for b in s.bytes() {
        if b == b' ' || b == b'-' {
            continue;
        }
        if n == compact.len() {
            return false;
        }
        compact[n] = b.to_ascii_uppercase();
        n += 1;
    }
    let compact = &compact[..n];
    if !(15..=34).contains(&n)
        || !compact[..2].iter().all(u8::is_ascii_alphabetic)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
    {
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

/// Does the number's issuer prefix fit its length (Visa 13/16/19, Amex 15, …)?
fn iin_fits(ds: &[u8]) -> bool {
    let n = ds.len();
    let prefix = |k: usize| ds[..k].iter().fold(0u32, |a, d| a * 10 + u32::from(*d));
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

fn ssn_parts_valid(ds: &[u8]) -> bool {
    ds.len() == 9
        && ds[..3] != [0, 0, 0]
        && ds[..3] != [6, 6, 6]
        && ds[0] != 9
        && ds[3..5] != [0, 0]
        && ds[5..] != [0, 0, 0, 0]
}

/// The most groups a window may span (`+49 (0) 30 12 34 56 78` has 8).
const MAX_WINDOW: usize = 8;
/// The most digits a window may hold (`00` + 15 digits of E.164, or a card).
const MAX_DIGITS: usize = 19;

/// One group of ASCII digits in a run, with what surrounds it.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    /// `(` right before the digits.
    lp: bool,
    /// `)` right after the digits.
    rp: bool,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A character that may separate two digit groups of one number.
fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '-' | '.' | '/' | '(' | ')')
}

/// A one-character separator that may split the groups of a card number.
fn is_card_sep(s: &str) -> bool {
    matches!(s, " " | "\u{a0}" | "\u{202f}" | "-" | ".")
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A run of digit groups and the text it lives in.
struct Run<'a> {
    text: &'a str,
    groups: &'a [Group],
    /// A `+` right before the first group.
    plus: bool,
    /// The first group is glued to a word (`DE89`, `a456`) or a decimal comma.
    glued_before: bool,
    /// The last group is glued to a word (`123e4567`).
    glued_after: bool,
}

/// Which detector a window search is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Card,
    Phone,
    Ssn,
}

impl Run<'_> {
    /// The separator between group `i - 1` and group `i`.
    fn sep(&self, i: usize) -> &str {
        &self.text[self.groups[i - 1].end..self.groups[i].start]
    }

    fn parenthesized(&self, i: usize) -> bool {
        self.groups[i].lp && self.groups[i].rp
    }

    /// The digits of groups `f..=l` into `buf`; `None` if there are more than fit.
    fn digits<'b>(&self, f: usize, l: usize, buf: &'b mut [u8; MAX_DIGITS]) -> Option<&'b [u8]> {
        let mut n = 0;
        for g in &self.groups[f..=l] {
            for &b in &self.text.as_bytes()[g.start..g.end] {
                if n == buf.len() {
                    return None;
                }
                buf[n] = b - b'0';
                n += 1;
            }
        }
        Some(&buf[..n])
    }

    /// Does the group next to the window (`nb`, joined by separator `sep`)
    /// continue the window's grouping, so the window is a slice of a longer
    /// number? `edge` is the window group next to it, `rep` the window's own
    /// separator on that side (`None` for a one-group window).
    fn continues(&self, nb: usize, sep: &str, edge: usize, rep: Option<&str>) -> bool {
        let glued =
            (nb == 0 && self.glued_before) || (nb == self.groups.len() - 1 && self.glued_after);
        let same = rep.is_none_or(|r| r == sep);
        if rep.is_none() && sep == "." {
            // `0.4111111111111111`: a decimal, not a number of its own.
            return true;
        }
        let (n, e) = (self.groups[nb].len(), self.groups[edge].len());
        same && (glued || n >= 4 || (n == e && n >= 2))
    }

    /// The window `f..=l` stands on its own: not glued to a word, not a slice
    /// of a longer grouping.
    fn stands_alone(&self, f: usize, l: usize) -> bool {
        if (f == 0 && self.glued_before) || (l == self.groups.len() - 1 && self.glued_after) {
            return false;
        }
        let multi = l > f;
        if f > 0 && self.continues(f - 1, self.sep(f), f, multi.then(|| self.sep(f + 1))) {
            return false;
        }
        if l + 1 < self.groups.len()
            && self.continues(l + 1, self.sep(l + 1), l, multi.then(|| self.sep(l)))
        {
            return false;
        }
        true
    }

    /// Parentheses inside the window pair up around whole groups, at most two
    /// of them, none of them the last group.
    fn parens_ok(&self, f: usize, l: usize) -> bool {
        let mut count = 0;
        for i in f + 1..=l {
            let s = self.sep(i);
            let (opens, closes) = (s.matches('(').count(), s.matches(')').count());
            if opens > 1 || closes > 1 {
                return false;
            }
            if closes == 1 && !(s.starts_with(')') && self.parenthesized(i - 1)) {
                return false;
            }
            if opens == 1 && !(s.ends_with('(') && i < l && self.parenthesized(i)) {
                return false;
            }
            if closes == 1 {
                count += 1;
                if self.groups[i - 1].len() > 5 {
                    return false;
                }
            }
        }
        count <= 2
    }

    /// Byte range of the window: with its `+` or its opening parenthesis.
    fn span(&self, f: usize, l: usize, kind: Kind) -> (usize, usize) {
        let g = &self.groups[f];
        let mut start = g.start;
        if kind == Kind::Phone {
            if f == 0 && self.plus {
                start -= 1; // the `+`
            }
            if l > f && self.parenthesized(f) {
                start -= 1; // the `(`
            }
        }
        (start, self.groups[l].end)
    }

    fn card(&self, f: usize, l: usize) -> bool {
        if f == 0 && self.plus {
            return false;
        }
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        if !(12..=19).contains(&ds.len()) || !iin_fits(ds) || !luhn_digits(ds) {
            return false;
        }
        if l > f {
            let sep = self.sep(f + 1);
            if !is_card_sep(sep) || (f + 2..=l).any(|i| self.sep(i) != sep) {
                return false;
            }
            if self.groups[f].len() != 4 {
                return false;
            }
            let inner_ok = (f + 1..l).all(|i| (3..=6).contains(&self.groups[i].len()));
            if !inner_ok || self.groups[l].len() > 6 {
                return false;
            }
        }
        true
    }

    fn ssn(&self, f: usize, l: usize) -> bool {
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        if !ssn_parts_valid(ds) {
            return false;
        }
        let lens = |want: &[usize]| {
            l - f + 1 == want.len() && (f..=l).zip(want).all(|(i, w)| self.groups[i].len() == *w)
        };
        if lens(&[3, 2, 4]) {
            let s = self.sep(f + 1);
            return matches!(s, "-" | " " | "\u{a0}") && self.sep(f + 2) == s;
        }
        l == f && !(f == 0 && self.plus) && ssn_keyword_before(self.text, self.groups[f].start)
    }

    fn phone(&self, f: usize, l: usize) -> bool {
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        let n = ds.len();
        if n < 8 || !self.parens_ok(f, l) {
            return false;
        }
        // Separators: the one after the first group (`+1 `, `(020) `, `030/`)
        // and those around parentheses are free; the others are one kind, or
        // spaces then dashes (`415 555-2671`, `495 123-45-67`).
        let mut plain = [""; MAX_WINDOW];
        let mut np = 0;
        for i in f + 2..=l {
            let s = self.sep(i);
            if !s.contains(['(', ')']) {
                plain[np] = s;
                np += 1;
            }
        }
        let plain = &plain[..np];
        let spaces = plain.iter().take_while(|s| **s == " ").count();
        let uniform =
            plain.iter().all(|s| *s == plain[0]) || plain[spaces..].iter().all(|s| *s == "-");
        if !uniform {
            return false;
        }
        let groups = &self.groups[f..=l];
        let k = groups.len();
        let lens_are =
            |want: &[usize]| k == want.len() && groups.iter().zip(want).all(|(g, w)| g.len() == *w);
        // `(0)` after a country code is the trunk prefix, not part of the number.
        let trunk_zero = (f + 1..=l)
            .filter(|&i| self.parenthesized(i) && self.groups[i].len() == 1 && ds_at(self, i) == 0)
            .count();
        // Groups after the first `from` have two digits or more, except `(0)`
        // and the one right after it (`+33 (0)6 12 34 56 78`).
        let is_trunk_zero = |i: usize| self.parenthesized(i) && self.groups[i].len() == 1;
        let short_tail = |from: usize| {
            (f + from..=l).any(|i| {
                self.groups[i].len() < 2 && !is_trunk_zero(i) && !(i > f && is_trunk_zero(i - 1))
            })
        };
        // International: `+` or `00`, then 8-15 digits.
        if f == 0 && self.plus {
            let d = n - trunk_zero;
            return (8..=15).contains(&d) && ds[0] != 0 && !short_tail(2);
        }
        if k >= 2 && ds[0] == 0 && ds[1] == 0 {
            let d = n - 2 - trunk_zero;
            return (3..=5).contains(&groups[0].len())
                && matches!(self.sep(f + 1), " " | "\u{a0}" | "\u{202f}" | "-")
                && ds[2] != 0
                && (9..=15).contains(&d)
                && !short_tail(2);
        }
        // National with trunk prefix 0.
        if ds[0] == 0 && ds[1] != 0 && trunk_zero == 0 {
            if k == 1 {
                return (10..=11).contains(&n);
            }
            // 3-2-4 is the shape of a US social security number, not of a phone.
            if groups[0].len() < 2
                || short_tail(1)
                || !(9..=12).contains(&n)
                || lens_are(&[3, 2, 4])
            {
                return false;
            }
            // `05 11 2026 14 30` is a date (and a time), not a phone.
            let date = k >= 3
                && groups[0].len() == 2
                && groups[1].len() == 2
                && groups[2].len() == 4
                && ds[0] * 10 + ds[1] <= 31
                && ds[2] * 10 + ds[3] <= 31
                && matches!(ds[4..6], [1, 9] | [2, 0]);
            // `01 23 45 67 89`: pairs only in the French shape.
            return !date && (!groups.iter().all(|g| g.len() == 2) || k == 5);
        }
        if k == 1 || trunk_zero > 0 {
            return false;
        }
        // NANP: [1] (NXX) NXX-XXXX.
        let nanp_from = if groups[0].len() == 1 && ds[0] == 1 {
            1
        } else {
            0
        };
        let g = &groups[nanp_from..];
        if g.len() == 3 && g[0].len() == 3 && g[1].len() == 3 && g[2].len() == 4 {
            let d = &ds[nanp_from..];
            if d[0] >= 2 && d[3] >= 2 {
                return true;
            }
        }
        let no_parens =
            trunk_zero == 0 && (f..=l).all(|i| !self.groups[i].lp && !self.groups[i].rp);
        // ES / PL nine digits.
        if n == 9 && no_parens {
            let uniform = (f + 2..=l).all(|i| self.sep(i) == self.sep(f + 1));
            if uniform
                && ((lens_are(&[3, 3, 3]) && ds[0] >= 5)
                    || lens_are(&[3, 2, 2, 2])
                    || lens_are(&[2, 3, 2, 2]))
                && ds[0] != 0
            {
                return true;
            }
        }
        // IT mobile (3xx), IN mobile (6-9), ten digits.
        if n == 10 && no_parens {
            if ds[0] == 3 && (lens_are(&[3, 3, 4]) || lens_are(&[3, 7])) {
                return true;
            }
            if ds[0] >= 6 && lens_are(&[5, 5]) {
                return true;
            }
        }
        // BR: (11) 91234-5678, (11) 3456-7890.
        if (lens_are(&[2, 5, 4]) && ds[2] == 9 || lens_are(&[2, 4, 4])) && ds[0] != 0 {
            return self.parenthesized(f) || (self.sep(f + 1) == " " && self.sep(f + 2) == "-");
        }
        false
    }

    fn valid(&self, kind: Kind, f: usize, l: usize) -> bool {
        self.stands_alone(f, l)
            && match kind {
                Kind::Card => self.card(f, l),
                Kind::Phone => self.phone(f, l),
                Kind::Ssn => self.ssn(f, l),
            }
    }

    /// Every non-overlapping valid window, longest first from the leftmost
    /// start. At most `MAX_WINDOW` tries per group: linear.
    fn search(&self, kind: Kind, det: Detector, out: &mut Vec<Span>) {
        // Digit counts a window of this kind can have: checked before anything else.
        let fits = |d: usize| match kind {
            Kind::Card => (12..=19).contains(&d),
            Kind::Phone => (8..=17).contains(&d),
            Kind::Ssn => d == 9,
        };
        let n = self.groups.len();
        let mut f = 0;
        while f < n {
            // Digits in windows f..=f, f..=f+1, …, as long as they fit MAX_DIGITS.
            let mut counts = [0usize; MAX_WINDOW];
            let mut k = 0;
            let mut total = 0;
            while f + k < n && k < MAX_WINDOW {
                total += self.groups[f + k].len();
                if total > MAX_DIGITS {
                    break;
                }
                counts[k] = total;
                k += 1;
            }
            let found = (0..k)
                .rev()
                .find(|&w| fits(counts[w]) && self.valid(kind, f, f + w));
            match found {
                Some(w) => {
                    let (s, e) = self.span(f, f + w, kind);
                    out.push(Span::new(s, e, det));
                    f += w + 1;
                }
                None => f += 1,
            }
        }
    }
}

fn ds_at(run: &Run<'_>, i: usize) -> u8 {
    run.text.as_bytes()[run.groups[i].start] - b'0'
}

/// Does a keyword for a social security number end within 24 bytes before `at`?
fn ssn_keyword_before(text: &str, at: usize) -> bool {
    let from = at.saturating_sub(24);
    let window = &text.as_bytes()[from..at];
    const KEYS: [&[u8]; 3] = [b"ssn", b"ss#", b"social security"];
    KEYS.iter()
        .any(|k| window.windows(k.len()).any(|w| w.eq_ignore_ascii_case(k)))
}

/// Cuts `text` into runs of digit groups and searches each for cards, phones
/// and SSNs. `groups` is scratch space.
fn scan_numbers(
    text: &str,
    want_card: bool,
    want_phone: bool,
    want_ssn: bool,
    cands: &mut Vec<Span>,
) {
    let bytes = text.as_bytes();
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A new run starts at `i` (the byte before is not a digit).
        groups.clear();
        let run_start = i;
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let lp = start > 0 && bytes[start - 1] == b'(';
            let rp = bytes.get(i) == Some(&b')');
            groups.push(Group {
                start,
                end: i,
                lp,
                rp,
            });
            // Up to three separator characters, then a digit continues the run.
            let mut j = i;
            let mut k = 0;
            while k < 3 {
                match text[j..].chars().next() {
                    Some(c) if is_sep(c) => {
                        j += c.len_utf8();
                        k += 1;
                    }
                    _ => break,
                }
            }
            if k > 0 && bytes.get(j).is_some_and(u8::is_ascii_digit) {
                i = j;
            } else {
                break;
            }
        }
        let before = text[..run_start].chars().next_back();
        let plus = before == Some('+');
        let lead = if plus { run_start - 1 } else { run_start };
        if plus && lead > 0 && bytes[lead - 1] == b'(' {
            groups[0].lp = true; // `(+49) 30 12345678`
        }
        let mut back = text[..lead].chars().rev();
        let prev = back.next();
        let glued_before = prev.is_some_and(is_word_char)
            || (prev == Some(',') && back.next().is_some_and(|c| c.is_ascii_digit()));
        let last_end = groups[groups.len() - 1].end;
        let glued_after = text[last_end..].chars().next().is_some_and(is_word_char);
        let run_digits: usize = groups.iter().map(Group::len).sum();
        let run = Run {
            text,
            groups: &groups,
            plus,
            glued_before,
            glued_after,
        };
        if run_digits < 8 {
            i = last_end.max(i);
            continue;
        }
        if want_card {
            run.search(Kind::Card, Detector::Card, cands);
        }
        if want_ssn {
            run.search(Kind::Ssn, Detector::UsSsn, cands);
        }
        if want_phone {
            run.search(Kind::Phone, Detector::Phone, cands);
        }
        i = last_end.max(i);
    }
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
    // Most free text has none of these: leave before the byte-by-byte pass.
    if !bytes.iter().any(u8::is_ascii_digit) && memchr::memchr3(b'@', b':', b'%', bytes).is_none() {
        return;
    }
    let (mut ndigits, mut at, mut colon, mut pct) = (0usize, false, false, false);
    // `digit.digit` occurrences (an IPv4 address has three) and a letter pair
    // followed by two digits (an IBAN's start).
    let (mut dotted, mut iban_start) = (0usize, false);
    let (mut p1, mut p2, mut p3) = (0u8, 0u8, 0u8);
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                ndigits += 1;
                if p1 == b'.' && p2.is_ascii_digit() {
                    dotted += 1;
                }
                if p1.is_ascii_digit() && p2.is_ascii_alphabetic() && p3.is_ascii_alphabetic() {
                    iban_start = true;
                }
            }
            b'@' => at = true,
            b':' => colon = true,
            b'%' => pct = true,
            _ => {}
        }
        (p3, p2, p1) = (p2, p1, b);
    }
    if !at && ndigits == 0 && !colon && !pct {
        return;
    }
    let p = &*PATTERNS;
    let mut cands: Vec<Span> = Vec::new();
    if at {
        for m in p.email.find_iter(text) {
            if email_valid(text, m.start(), m.end()) {
                cands.push(Span::new(m.start(), m.end(), Detector::Email));
            }
        }
    }
    if pct && ndigits >= 2 && memchr::memmem::find(bytes, b"%40").is_some() {
        for m in p.email_encoded.find_iter(text) {
            if email_valid(text, m.start(), m.end()) {
                cands.push(Span::new(m.start(), m.end(), Detector::Email));
            }
        }
    }
    if ndigits >= 8 {
        scan_numbers(text, ndigits >= 12, true, ndigits >= 9, &mut cands);
    }
    if iban_start && bytes.len() >= 15 {
        for m in p.iban.find_iter(text) {
            if let Some(end) = iban_end(m.as_str()) {
                cands.push(Span::new(m.start(), m.start() + end, Detector::Iban));
            }
        }
    }
    if dotted >= 3 {
        for m in p.ipv4.find_iter(text) {
            let dotted_before = m.start() >= 2
                && bytes[m.start() - 1] == b'.'
                && bytes[m.start() - 2].is_ascii_digit();
            let dotted_after = bytes.get(m.end()) == Some(&b'.')
                && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
            // 0.x.x.x is never a host's address (`0.4.2.1-alpha` is a version).
            if !dotted_before
                && !dotted_after
                && !m.as_str().starts_with("0.")
                && m.as_str().parse::<Ipv4Addr>().is_ok()
            {
                cands.push(Span::new(m.start(), m.end(), Detector::Ipv4));
            }
        }
    }
    if colon {
        for m in p.ipv6.find_iter(text) {
            if let Some(start) = ipv6_start(text, m.start(), m.end()) {
                cands.push(Span::new(start, m.end(), Detector::Ipv6));
            }
        }
    }
    // An IPv4-mapped IPv6 address (`::ffff:192.0.2.128`) is one IPv6 address.
    if cands.iter().any(|c| c.detector == Detector::Ipv6) {
        let v6: Vec<(usize, usize)> = cands
            .iter()
            .filter(|c| c.detector == Detector::Ipv6)
            .map(|c| (c.start, c.end))
            .collect();
        cands.retain(|c| {
            c.detector != Detector::Ipv4 || !v6.iter().any(|&(s, e)| s <= c.start && c.end <= e)
        });
    }
    merge(cands, out);
}

/// Resolves overlaps: one span covering both, keeping every detector, so no
/// part of either is left in clear text and the most restrictive action applies.
fn merge(mut cands: Vec<Span>, out: &mut Vec<Span>) {
    cands.sort_by_key(|c| (c.start, c.detector, std::cmp::Reverse(c.end)));
    for c in cands {
        match out.last_mut() {
            Some(last) if c.start < last.end => {
                last.end = last.end.max(c.end);
                last.detector = last.detector.min(c.detector);
                last.detectors = last.detectors.union(c.detectors);
            }
            _ => out.push(c),
        }
    }
}

/// An e-mail match stands on its own: the next character does not continue a word.
fn email_valid(text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    let local = m.find('@').or_else(|| m.find("%40")).unwrap_or(m.len());
    local <= 64 * 4
        && m.len() - local <= 255 * 4
        && !m.ends_with('-')
        && !text[end..]
            .chars()
            .next()
            .is_some_and(|c| is_word_char(c) || c == '@')
}

/// The IBAN at the start of `s`: the whole match, or the longest prefix ending
/// at a group boundary (`DE89 3704 0044 0532 0130 00 ABCD`), that passes mod-97.
fn iban_end(s: &str) -> Option<usize> {
    if iban_valid(s) {
        return Some(s.len());
    }
    // Shorter candidates end right before a separator; at most 8 of them.
    s.match_indices([' ', '-'])
        .map(|(i, _)| i)
        .filter(|&i| i >= 15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(8)
        .find(|&i| iban_valid(&s[..i]))
}

/// The start of a valid IPv6 address matched at `start..end`, if it is one.
/// After a label (`ip:2001:db8::1`) the label is not part of the address.
fn ipv6_start(text: &str, start: usize, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let hexcolon = |b: &u8| b.is_ascii_hexdigit() || *b == b':';
    let dotted =
        bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
    if bytes.get(end).is_some_and(hexcolon) || dotted {
        return None;
    }
    let parses = |s: usize| {
        let a = &text[s..end];
        a.bytes().any(|b| b.is_ascii_hexdigit()) && a.parse::<Ipv6Addr>().is_ok()
    };
    let glued = text[..start].chars().next_back().is_some_and(is_word_char);
    let label_colon = bytes[start] == b':' && bytes.get(start + 1) != Some(&b':');
    if glued || label_colon {
        // Skip the label's tail and its colon.
        let colon = text[start..end].find(':')?;
        let s = start + colon + 1;
        let before_label = text[..start].chars().next_back();
        // `ab:…` where the label is hex itself is ambiguous; only a word label counts.
        if s < end && parses(s) && (glued || !before_label.is_some_and(|c| c.is_ascii_hexdigit())) {
            return Some(s);
        }
        return None;
    }
    if start > 0 && hexcolon(&bytes[start - 1]) {
        return None;
    }
    parses(start).then_some(start)
}

/// Detects personal data in the raw text of a JSON number.
///
/// A plain integer is scanned as text. A number in decimal or exponent form
/// that denotes an integer (`4.111111111111111E15`, `4111111111111111e0`) is
/// expanded to its digits and the expansion is scanned; any finding yields
/// one span covering the whole raw text, with every detector found. Exponents
/// beyond ±30 cannot make a card or phone number and yield nothing.
pub fn detect_number(raw: &str, out: &mut Vec<Span>) {
    out.clear();
    let body = raw.strip_prefix('-').unwrap_or(raw);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let frac = frac.unwrap_or("");
    if exp.is_none() && frac.is_empty() && !mantissa.contains('.') {
        detect_into(raw, out);
        return;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.is_empty() {
        return;
    }
    let exp: i64 = match exp {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return;
            }
            let v: i64 = digits.parse().unwrap_or(i64::MAX);
            if e.starts_with('-') {
                -v
            } else {
                v
            }
        }
    };
    if exp.abs() > 30 {
        return;
    }
    // value = int.frac × 10^exp = (int ++ frac) × 10^(exp - frac.len())
    let shift = exp - frac.len() as i64;
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if n == 0 && b == b'0' {
            continue; // leading zeros do not count
        }
        if n == buf.len() {
            return;
        }
        buf[n] = b;
        n += 1;
    }
    if shift >= 0 {
        for _ in 0..shift {
            if n == buf.len() {
                return;
            }
            buf[n] = b'0';
            n += 1;
        }
    } else {
        // Drop trailing zeros of the fraction; anything else is not an integer.
        let drop = shift.unsigned_abs() as usize;
        if drop > n && buf[..n].iter().any(|&b| b != b'0') {
            return;
        }
        let keep = n.saturating_sub(drop);
        if buf[keep..n].iter().any(|&b| b != b'0') {
            return;
        }
        n = keep;
    }
    if n == 0 {
        return;
    }
    let expanded = std::str::from_utf8(&buf[..n]).expect("expansion is ASCII digits");
    let mut found = Vec::new();
    detect_into(expanded, &mut found);
    let detectors: DetectorSet = found.iter().flat_map(|s| s.detectors.iter()).collect();
    if let Some(detector) = detectors.first() {
        out.push(Span {
            start: 0,
            end: raw.len(),
            detector,
            detectors,
        });
    }
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

    // Regression tests for the adversarial review.

    #[test]
    fn numbers_next_to_other_numbers_are_found() {
        check(
            "card 4111 1111 1111 1111 12/28",
            &[("4111 1111 1111 1111", Detector::Card)],
        );
        check(
            "card 4111111111111111 123",
            &[("4111111111111111", Detector::Card)],
        );
        check(
            "qty 2 4111 1111 1111 1111",
            &[("4111 1111 1111 1111", Detector::Card)],
        );
        check(
            "Call 020 7946 0958 2 times",
            &[("020 7946 0958", Detector::Phone)],
        );
        check(
            "room 12 +44 20 7946 0958",
            &[("+44 20 7946 0958", Detector::Phone)],
        );
        check(
            "apt 5 (415) 555-2671",
            &[("(415) 555-2671", Detector::Phone)],
        );
        // Still: a slice of a longer grouping is not a number of its own.
        check("ref 1234 4111 1111 1111 1111", &[]);
    }

    #[test]
    fn common_phone_formats() {
        for p in [
            "0044 20 7946 0958",
            "(020) 7946 0958",
            "07700 900123",
            "030 12345678",
            "0171/1234567",
            "020\u{a0}7946\u{a0}0958",
            "+44\u{202f}20\u{202f}7946\u{202f}0958",
            "+33 6 12 34 56 78",
            "06 12 34 56 78",
            "+49 (0)30 1234567",
            "612 34 56 78",
            "333 123 4567",
            "98765 43210",
            "(11) 91234-5678",
            "03-1234-5678",
            "+1 415 555-2671",
            "(+49) 30 12345678",
            "+7 495 123-45-67",
            "+44 (0)20 7946 0958",
        ] {
            let text = format!("call {p} now");
            check(&text, &[(p, Detector::Phone)]);
        }
    }

    #[test]
    fn card_separators() {
        for c in [
            "4111.1111.1111.1111",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "3782 822463 10005",
        ] {
            let text = format!("card {c}.");
            check(&text, &[(c, Detector::Card)]);
        }
        check("card 4111 1111-1111 1111", &[]);
    }

    #[test]
    fn international_and_encoded_emails() {
        check(
            "an jürgen@müller.de schreiben",
            &[("jürgen@müller.de", Detector::Email)],
        );
        check(
            "?to=ada%40example.com&x=1",
            &[("ada%40example.com", Detector::Email)],
        );
        check(
            "mail o'brien@example.com",
            &[("o'brien@example.com", Detector::Email)],
        );
        check("'ada@example.com'", &[("ada@example.com", Detector::Email)]);
    }

    #[test]
    fn ipv6_after_label() {
        check("ip:2001:db8::1", &[("2001:db8::1", Detector::Ipv6)]);
        check("addr=fe80::1 ok", &[("fe80::1", Detector::Ipv6)]);
    }

    #[test]
    fn ssn_forms() {
        check("ssn 123 45 6789", &[("123 45 6789", Detector::UsSsn)]);
        check("SSN#123456789", &[("123456789", Detector::UsSsn)]);
        check(
            "social security no. 123456789",
            &[("123456789", Detector::UsSsn)],
        );
        check("order 123456789", &[]);
    }

    #[test]
    fn iban_with_dashes() {
        check(
            "iban DE89-3704-0044-0532-0130-00",
            &[("DE89-3704-0044-0532-0130-00", Detector::Iban)],
        );
        check(
            "DE89 3704 0044 0532 0130 00 ABCD",
            &[("DE89 3704 0044 0532 0130 00", Detector::Iban)],
        );
    }

    #[test]
    fn numbers_in_exponent_form() {
        let find = |raw: &str| {
            let mut out = Vec::new();
            detect_number(raw, &mut out);
            out
        };
        for raw in [
            "4.111111111111111E15",
            "4111111111111111e0",
            "4.1111111111111110E+15",
            "41111111111111110e-1",
            "4111111111111111.0",
        ] {
            let got = find(raw);
            assert_eq!(got.len(), 1, "{raw}: {got:?}");
            assert_eq!((got[0].start, got[0].end), (0, raw.len()));
            assert_eq!(got[0].detector, Detector::Card);
        }
        assert!(find("4111111111111111").len() == 1);
        assert!(find("4.111111111111111E14").is_empty());
        assert!(find("4.1111111111111115E15").is_empty()); // not Luhn-valid
        assert!(find("1e400").is_empty());
        assert!(find("1.5").is_empty());
        assert!(find("1e-5").is_empty());
        assert!(find("-").is_empty());
        assert!(find("").is_empty());
    }

    #[test]
    fn merged_spans_keep_every_detector() {
        let spans = detect("call +44 7946 10.1.2.3 now");
        assert_eq!(spans.len(), 1);
        let s = spans[0];
        assert_eq!(s.detector, Detector::Ipv4);
        assert!(s.detectors.contains(Detector::Phone) && s.detectors.contains(Detector::Ipv4));
        assert_eq!(
            s.detectors.iter().collect::<Vec<_>>(),
            vec![Detector::Ipv4, Detector::Phone]
        );
        for s in detect("Jane (jane@example.com, +33 6 12 34 56 78) 5555 5555 5555 4444") {
            assert!(s.detectors.contains(s.detector));
            assert_eq!(s.detectors.len(), 1);
        }
    }

    #[test]
    fn detector_set() {
        let mut s = DetectorSet::EMPTY;
        assert!(s.is_empty());
        s.insert(Detector::Phone);
        s.insert(Detector::Email);
        s.insert(Detector::Phone);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Detector::Email, Detector::Phone]
        );
        assert_eq!(
            DetectorSet::single(Detector::Card).first(),
            Some(Detector::Card)
        );
    }

    #[test]
    fn never_panics_near_multibyte_chars() {
        for text in [
            "é4111111111111111é",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111\u{a0}",
            "+\u{202f}44\u{202f}",
            "ü@ü.ü",
            "%40",
            "ß:1::",
            "(((((1)))))",
            "0\u{a0}(\u{a0}0",
            "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3",
        ] {
            for s in detect(text) {
                assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            }
            let mut out = Vec::new();
            detect_number(text, &mut out);
        }
    }
}
