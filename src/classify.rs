//! Classification of free text: built-in detectors that find personal data
//! inside `scan: true` fields (docs/governance.md, and the detector reference
//! in docs/).
//!
//! What it is for: given a string (or the raw text of a JSON number, see
//! [`detect_number`]), return the byte ranges that hold an e-mail address, a
//! phone number, a payment card number, an IBAN, an IP address or a US social
//! security number, each tagged with every detector that matched it.
//!
//! What it must never do: I/O, logging, or copying matched text anywhere but
//! small stack buffers (digits of a window, a JSON number's expansion) and
//! the folded copy described below, which lives for one call only; take more
//! than linear time in the input size (the regular expressions come from the
//! `regex` crate, which guarantees linear time, and every window search below
//! is bounded by a small constant per digit group or byte); panic on any
//! input, whatever its UTF-8 (spans always start and end on char boundaries).
//!
//! Folding pre-pass (against obfuscation). A text that is not all ASCII, or
//! that holds `&` or `%`, is first folded into a copy with a map from each of
//! its bytes back to the original character's byte range: invisible format
//! characters are removed (soft hyphen U+00AD, U+034F, U+061C, U+180E,
//! U+200B..U+200F, bidi controls U+202A..U+202E and U+2066..U+206F,
//! U+2060..U+2064, U+FEFF); decimal digits of other scripts become ASCII
//! digits (Arabic-Indic, Extended Arabic-Indic, NKo, the Indic scripts from
//! Devanagari to Sinhala, Thai, Lao, Tibetan, Myanmar, Khmer, Mongolian,
//! Limbu, New Tai Lue, Saurashtra, Kayah Li, Cham, full-width, mathematical);
//! full-width ASCII forms (U+FF01..U+FF5E: `＠`, `＋`, `．`) become ASCII;
//! dashes U+2010..U+2015, U+2212, U+FE58, U+FE63 become `-`; the no-break,
//! typographic and ideographic spaces become a space; HTML numeric entities
//! (`&#64;`, `&#x40;`, also without the `;` as browsers read them: `&#64`;
//! any code point, folded in turn) and the named
//! `&commat; &plus; &period; &hyphen; &dash; &ndash; &minus; &nbsp; &lpar;
//! &rpar; &sol;` are decoded; percent escapes of `@ + . - space ( ) / :` are
//! decoded (`%40`, `%2B`, `%2E`, `%2D`, `%20`, …, any case, and encoded
//! again: `%2540`), wherever they are. The detectors run on the folded copy and every span is mapped back to
//! the smallest original byte range covering it, so it covers every original
//! byte of the data, removed invisible characters and whole escapes included.
//! All-ASCII text without `&`/`%` is scanned as it is (no copy).
//!
//! How numbers are found. Cards are found by a backstop that judges digits,
//! not formatting ([`scan_cards`]): the text is cut into *streams* of digit
//! groups separated by short gaps of characters that are neither letters nor
//! digits (any punctuation: `4111|1111|…`, `4111 -- 1111`, `4111·1111`), and
//! every window that starts at a group (or after leading zeros, `004111…`),
//! ends at a group's end and holds 12-19 digits is checked with Luhn and an
//! issuer prefix that fits the length; its groups must be a card's grouping
//! (one separator mark throughout, or groups of three digits or more, which
//! keeps dates and times out), and a window of 12-14 digits must be the
//! whole stream (so the last 12 digits of `1234-5678-9012-3456` are not a
//! Maestro card, and `+49 151 12345678` is a phone). A full-length card is
//! found wherever it stands: after another number (`ref 1234 4111 …`), behind
//! a decimal point (`1.4111…`; a decimal with sixteen card-valid fractional
//! digits is reported as a card, erring towards the data subject), after `+`
//! (also searched as a phone; the spans merge), glued to letters
//! (`US4111…`; the digits of a valid IBAN are the IBAN's), before an expiry
//! or CVC. Letters between digit groups end a stream (`4111a1111…` is not
//! read as a card: hex ids would otherwise flood the outputs with false
//! positives).
//!
//! Phones and SSNs are found by a validator-driven search: the text is cut
//! into *runs* of digit groups (digits separated by up to three of space, NBSP
//! U+00A0, narrow NBSP U+202F, tab, CR, LF, `-`, `.`, `/`, `(`, `)`, `_`,
//! `,`, `*`; a run ends where a card found before starts, so a phone right
//! before or after a card is judged on its own), and every window of
//! consecutive groups (at most eight groups) is tried against the validators,
//! longest first, so a valid number next to another number (`Call 020 7946
//! 0958 2 times`) is still found and covered exactly. A window is refused
//! when the group next to it continues its grouping (same separator and a
//! group of four or more digits, or of the same length, or a group glued to
//! letters): it is then a slice of a longer reference, not a number of its
//! own. An international phone (`+…`, or the digits of a `wa.me/` link) may
//! be glued to letters (`tel+44…`, `…2671x`) and followed by more groups; the
//! groups after it in the same run (any separator: `+49 30/1234 5678`) are added to its
//! span up to 20 digits in all (`+44 20 7946 0958 1234` is covered whole:
//! the number may really end there, as in `+44 20 7946 0958` glued to `1234`
//! by an invisible character).
//!
//! * Phones, by shape rather than by a full numbering plan: international
//!   (`+` then 8-15 digits or `00` then 9-15, `(0)` allowed; country code 1
//!   is followed by exactly ten digits), NANP (`(415) 555-2671`,
//!   `1-415-555-2671`), national with trunk prefix `0` (9-12 digits, or a
//!   compact 10-11 digits: UK, DE, FR, IT, JP, AU, IN, BR landlines and
//!   mobiles), and the common national shapes without trunk prefix: ES/PL
//!   nine digits (`612 34 56 78`, `512 345 678`, `22 123 45 67`), IT mobiles
//!   (`333 123 4567`), IN mobiles (`98765 43210`), BR (`(11) 91234-5678`).
//!   Bare runs of digits without `+`, `00`, trunk `0` or a `wa.me/` link are
//!   never phones: `44 20 7946 0958` (a country code without `+`) is not
//!   taken, as it cannot be told from a reference without a full numbering
//!   plan; nor is `dd dd yyyy…` (a date). Separators `,` and `*` never join a
//!   phone. Known ambiguity: `512 345 678` may be an amount written with
//!   space thousands separators; it is reported as a phone.
//! * US SSN: `123-45-6789`, `123 45 6789`, `123.45.6789`, `123/45/6789` (en
//!   dash folds to `-`; area not 000/666/9xx, group not 00, serial not
//!   0000). A bare nine-digit run is too ambiguous in general; it is accepted
//!   only when one of the keywords `ssn`, `ss#`, `s.s.n`, `social security`,
//!   `soc. sec` (any case) ends within 24 bytes before it.
//! * IBAN: a scanner, not a pattern: a country code of the ISO 13616
//!   registry (capitals, possibly glued to a word as in `ibanDE89…`; lower
//!   or mixed case only when not glued, which keeps hex hashes out), two
//!   check digits, then letters and digits with up to three of space, tab,
//!   line break, `-`, `.`, `/`, `_`, `|`, `,`, `:` between any two
//!   characters (`DE 89 …`, `DE89.3704.…`, `DE89 370 400 …`, a line break
//!   where text was wrapped), exactly the country's registered length, mod-97. What
//!   follows does not matter: `DE8937040044053201300012` yields the valid
//!   IBAN, two glued IBANs yield two.
//! * E-mail: Unicode local part and domain (`jürgen@müller.de`), apostrophes
//!   inside the local part (`o'brien@example.com`), the URL-encoded `%40`
//!   form of `@`, a quoted local part (`"ada lovelace"@example.com`). A local
//!   part longer than 64 characters (padding such as `ref:____…ada@…`) is
//!   cut to the longest valid local part of at most 64 characters ending at
//!   the `@`, so padding cannot hide the address. A host without a dot is
//!   taken only inside angle brackets (`<ada@localhost>`; a bare
//!   `user@localhost` is not). Obfuscated forms: `ada [at] example [dot]
//!   com` with `[]`, `()`, `{}` or `<>` around `at` and `dot` (or a literal
//!   dot), and the spelled-out `ada at example dot com`, taken only with both
//!   ` at ` and ` dot `, a common top-level domain last, and a mailbox name
//!   that is not a prose word (`email at example dot com`, `work at acme dot
//!   com` are not); ` at ` with a literal dot (`ada at example.com`) under
//!   the same conditions. Spaces and RFC 5322 comments around `@` and the
//!   dots (`ada @ example . com`, `ada(comment)@example.com`) with a common
//!   top-level domain and names of two characters or more (`a @ b . com` is
//!   a placeholder). Domain literals (`ada@[192.0.2.1]`,
//!   `ada@[IPv6:2001:db8::1]`). Known risk: prose of the shape `<name> at
//!   <word> dot com` or `<name> at <word>.com` is reported as an address.
//! * IPv4: a dotted quad of octets 0-255, each up to three decimal digits
//!   (leading zeros allowed: `081.2.69.160`) or `0x` hexadecimal
//!   (`0x51.0x2.0x45.0xa0`), that is not a slice of a longer dotted number
//!   (`1.3.6.1.4.1`) nor glued to a letter (`v1.2.3.4`), nor `0.x.x.x`, nor
//!   four zero-padded two-digit parts (`01.02.03.04`, a date or time), nor
//!   inside an IPv6 address; and an address written as one integer
//!   (`1361069472`, at least 2^24) only right after the keyword `ip`,
//!   `ipv4`, `ip address`, `addr` or `address`. Known ambiguity: a four-part
//!   version number whose parts are all ≤ 255 (`10.0.0.1`) cannot be told
//!   from an address and is reported as one; `10.0.19045.2965` is not an
//!   address.
//! * IPv6: parsed by the standard library, not part of a longer hex/colon
//!   run; after a label such as `ip:` the label is not part of the address.
//!
//! Overlapping candidates are merged into one span that keeps every detector
//! involved ([`Span::detectors`]), so the engine can apply the most
//! restrictive action.

use std::net::Ipv6Addr;
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
    /// `"quoted local part"@example.com`.
    email_quoted: Regex,
    /// `<user@host>`: a host without a dot, only inside angle brackets.
    email_angle: Regex,
    /// `ada [at] example [dot] com`, `ada (at) example.com`.
    email_bracketed: Regex,
    /// `ada at example dot com`, `ada at example.com`.
    email_spelled: Regex,
    /// `ada @ example . com`, `ada(comment)@example.com`: spaces and
    /// RFC 5322 comments around `@` and the dots (ASCII, common TLDs only).
    email_spaced: Regex,
    /// `ada@[192.0.2.1]`, `ada@[IPv6:2001:db8::1]`: a domain literal, and
    /// a bare address as host (`ada@10.0.0.5`).
    email_literal: Regex,
    /// `ip-203-0-113-45.ec2.internal`, `203-0-113-45.sslip.io`: an address
    /// in a host name.
    ipv4_dashed: Regex,
    ipv4: Regex,
    /// `ip 1361069472`: an address as one integer, after a keyword.
    ipv4_int: Regex,
    ipv6: Regex,
}

// Letters and digits of any script; lengths are checked after the match
// (counted repetitions of Unicode classes make the automaton too big).
// After the first character, the characters RFC 5322 allows unquoted
// (`ada{x}@`, `ada|shop@`) except the URL delimiters `= & ? /`, so that
// `?to=ada@example.com` yields the address, not `to=ada@…` (known risk: the
// part of a local part before one of them, `ada.lovelace=shop@…`, stays).
const EMAIL_LOCAL: &str = r"[\p{L}\p{N}_%+\-][\p{L}\p{M}\p{N}_.%+\-'’!#$*^`{|}~]*";
const EMAIL_DOMAIN: &str =
    r"[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*(?:\.[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*)*\.\p{L}[\p{L}\p{M}]+";
const EMAIL_QUOTED_SRC: &str = r#""[^"\\\r\n]+"@"#;
const EMAIL_ANGLE_SRC: &str =
    r"<([\p{L}\p{N}_%+\-][\p{L}\p{M}\p{N}_.%+\-'’]*@[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*)>";
// Obfuscated addresses: letters and digits of any script (`ada@münchen[.]de`,
// `ada@пример[.]рф`); brackets of other scripts fold to these (`【.】`).
const OB_OPEN: &str = r"\s*[\[({<]\s*";
const OB_CLOSE: &str = r"\s*[\])}>]\s*";
const OB_LOCAL: &str = r"[\p{L}\p{N}_%+\-][\p{L}\p{M}\p{N}_.%+\-'’!#$*^`{|}~]*";
const OB_LABEL: &str = r"[\p{L}\p{N}][\p{L}\p{M}\p{N}\-]*";
// ASCII word boundaries ((?-u:\b)) keep the lazy DFA usable on any input.
const IPV4_SRC: &str =
    r"(?i)(?-u:\b)(?:(?:0x[0-9a-f]{1,2}|[0-9]{1,3})\.){3}(?:0x[0-9a-f]{1,2}|[0-9]{1,3})(?-u:\b)";
const IPV4_INT_SRC: &str =
    r"(?i)(?-u:\b)(?:ip|ipv4|ip address|addr|address)(?:\s*[:=#]\s*|\s+)([0-9]{8,10})(?-u:\b)";
// An address written with `-` or `_` in a host name: after a word and a
// dash (`ip-203-0-113-45`, `ec2-…`, `pool-…`, `c-…`), or before `.` and a
// letter (`203-0-113-45.sslip.io`).
const IPV4_DASHED_SRC: &str = r"(?i)(?:((?-u:\b)[a-z][a-z0-9]{0,15}[-_])|(?-u:\b))([0-9]{1,3}[-_][0-9]{1,3}[-_][0-9]{1,3}[-_][0-9]{1,3})(\.[a-z])?";
const IPV6_SRC: &str =
    r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-f]{1,4})?|::";

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let re = |src: &str| Regex::new(src).expect("built-in detector pattern is valid");
    Patterns {
        email: re(&format!("{EMAIL_LOCAL}@{EMAIL_DOMAIN}")),
        email_encoded: re(&format!("{EMAIL_LOCAL}%40{EMAIL_DOMAIN}")),
        email_quoted: re(&format!("{EMAIL_QUOTED_SRC}{EMAIL_DOMAIN}")),
        email_angle: re(EMAIL_ANGLE_SRC),
        email_bracketed: re(&format!(
            r"(?i)\b{OB_LOCAL}(?:{OB_OPEN}at{OB_CLOSE}|\s*@\s*){OB_LABEL}(?:(?:{OB_OPEN}(?:dot|\.){OB_CLOSE}|\s+dot\s+|\.){OB_LABEL})+"
        )),
        email_spelled: re(&format!(
            r"(?i)\b({OB_LOCAL})\s+at\s+{OB_LABEL}(?:(?:\s+dot\s+|\s*\.\s*|{OB_OPEN}(?:dot|\.){OB_CLOSE}){OB_LABEL})+"
        )),
        email_spaced: re(&format!(
            r"(?i)\b{OB_LOCAL}(?:\s*\([^()@\n]{{0,64}}\))?\s*@\s*(?:\([^()@\n]{{0,64}}\)\s*)?{OB_LABEL}(?:\s*\.\s*{OB_LABEL})+"
        )),
        email_literal: re(&format!(
            r"(?i){EMAIL_LOCAL}@(?:\[(?:ipv6:)?[0-9a-f:.]{{2,45}}\]|(?:[0-9]{{1,3}}\.){{3}}[0-9]{{1,3}}(?-u:\b))"
        )),
        ipv4_dashed: re(IPV4_DASHED_SRC),
        ipv4: re(IPV4_SRC),
        ipv4_int: re(IPV4_INT_SRC),
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
    iban_compact_valid(&compact[..n])
}

/// mod-97 check of an IBAN without separators, upper case.
fn iban_compact_valid(compact: &[u8]) -> bool {
    let n = compact.len();
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
    matches!(
        c,
        ' ' | '\u{a0}'
            | '\u{202f}'
            | '-'
            | '.'
            | '/'
            | '('
            | ')'
            | '_'
            | ','
            | '*'
            | '\t'
            | '\n'
            | '\r'
    )
}

/// One no-break space (NBSP, narrow NBSP) is a space. A double space, a tab
/// or a line break stays itself: it separates columns and lines
/// (`0412 345 678  06 12 34 56 78` and `0412 345 678⏎06 12 34 56 78` are two
/// phones), though a number written with it throughout is one
/// (`078  05  1120`).
fn norm_sep(s: &str) -> &str {
    if matches!(s, "\u{a0}" | "\u{202f}") {
        " "
    } else {
        s
    }
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
    /// Where the number starts with its `+` (the first group's start without one).
    lead: usize,
    /// The run is an international number: after `+`, or in a `wa.me/` link.
    intl: bool,
    /// The first group is glued to a word (`DE89`, `a456`) or a decimal comma.
    glued_before: bool,
    /// The last group is glued to a word (`123e4567`).
    glued_after: bool,
}

/// Which detector a window search is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
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
        if rep.is_none() && (sep == "." || sep == ",") && nb < edge {
            // `0.4111111111111111`, `0,4111111111111111`: a decimal, not a
            // number of its own.
            return true;
        }
        let (n, e) = (self.groups[nb].len(), self.groups[edge].len());
        same && (glued || n >= 4 || (n == e && n >= 2))
    }

    /// The window `f..=l` stands on its own: not glued to a word, not a slice
    /// of a longer grouping.
    ///
    /// An international phone (`+`) may be glued to letters (`tel+44…`,
    /// `…2671x`) and be followed by more groups.
    fn stands_alone(&self, kind: Kind, f: usize, l: usize, consumed: usize) -> bool {
        let last = self.groups.len() - 1;
        let intl_phone = kind == Kind::Phone && f == 0 && self.intl;
        if f == 0 && self.glued_before && !intl_phone {
            return false;
        }
        if l == last && self.glued_after && !intl_phone {
            return false;
        }
        let multi = l > f;
        if f > 0
            && f > consumed
            && self.continues(f - 1, self.sep(f), f, multi.then(|| self.sep(f + 1)))
        {
            return false;
        }
        if l + 1 < self.groups.len()
            && !intl_phone
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
                start = self.lead; // the `+`
            }
            if l > f && self.parenthesized(f) {
                start -= 1; // the `(`
            }
        }
        (start, self.groups[l].end)
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
            let s = norm_sep(self.sep(f + 1));
            return matches!(s, "-" | " " | "  " | "." | "/" | "_" | " - ")
                && norm_sep(self.sep(f + 2)) == s;
        }
        l == f && !(f == 0 && self.intl) && ssn_keyword_before(self.text, self.groups[f].start)
    }

    fn phone(&self, f: usize, l: usize) -> bool {
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        let n = ds.len();
        if n < 8 || !self.parens_ok(f, l) || (f + 1..=l).any(|i| self.sep(i).contains([',', '*'])) {
            return false;
        }
        // Separators: the one after the first group (`+1 `, `(020) `, `030/`)
        // and those around parentheses are free; the others are one kind, or
        // spaces then dashes (`415 555-2671`, `495 123-45-67`).
        let mut plain = [""; MAX_WINDOW];
        let mut np = 0;
        for i in f + 2..=l {
            let s = norm_sep(self.sep(i));
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
        // Country code 1 (NANP) is followed by exactly ten digits.
        if f == 0 && self.intl {
            let d = n - trunk_zero;
            return (8..=15).contains(&d)
                && ds[0] != 0
                && !short_tail(2)
                && (ds[0] != 1 || d == 11);
        }
        // `00` then a country code, written without spaces (`00447700900123`).
        if k == 1 && ds[0] == 0 && ds[1] == 0 && ds[2] != 0 {
            let d = n - 2;
            return (11..=15).contains(&d) && (ds[2] != 1 || d == 11);
        }
        if k >= 2 && ds[0] == 0 && ds[1] == 0 {
            let d = n - 2 - trunk_zero;
            return (2..=5).contains(&groups[0].len())
                && (ds[2] != 1 || d == 11)
                && matches!(norm_sep(self.sep(f + 1)), " " | "-")
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
        // RU / KZ national with trunk prefix 8: `8 (912) 345-67-89`,
        // `8-800-555-35-35`, `8 912 345 67 89`; written compact only for
        // mobiles (`89123456789`).
        if ds[0] == 8 && n == 11 && matches!(ds[1], 3 | 4 | 7 | 8 | 9) && trunk_zero == 0 {
            if k == 1 {
                return ds[1] == 9;
            }
            // Area codes of 3-5 digits (`8 (3452) 12-34-56`), or the ten
            // digits in one group (`8 9123456789`).
            let tail_from = if groups[1].len() == 5 { 3 } else { 2 };
            if groups[0].len() == 1 && (3..=5).contains(&groups[1].len()) && !short_tail(tail_from)
            {
                return true;
            }
            if k == 2 && groups[0].len() == 1 {
                return true;
            }
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

    fn valid(&self, kind: Kind, f: usize, l: usize, consumed: usize) -> bool {
        self.stands_alone(kind, f, l, consumed)
            && match kind {
                Kind::Phone => self.phone(f, l),
                Kind::Ssn => self.ssn(f, l),
            }
    }

    /// Every non-overlapping valid window, longest first from the leftmost
    /// start. At most `MAX_WINDOW` tries per group: linear.
    fn search(&self, kind: Kind, det: Detector, out: &mut Vec<Span>) {
        // Digit counts a window of this kind can have: checked before anything else.
        let fits = |d: usize| match kind {
            Kind::Phone => (8..=17).contains(&d),
            Kind::Ssn => d == 9,
        };
        let n = self.groups.len();
        let mut f = 0;
        // Groups before `consumed` belong to a window found before.
        let mut consumed = 0;
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
                .find(|&w| fits(counts[w]) && self.valid(kind, f, f + w, consumed));
            match found {
                Some(mut w) => {
                    // An international phone takes the groups that continue
                    // it (`+44 20 7946 0958 1234`, or `…0958` glued to `1234`
                    // by an invisible character): its last digits may be
                    // there, and covering more only redacts more.
                    if kind == Kind::Phone && f == 0 && self.intl {
                        let mut total = counts[w];
                        while f + w + 1 < n
                            && total + self.groups[f + w + 1].len() <= MAX_DIGITS + 1
                            && !self.sep(f + w + 1).contains(['\n', '\r', '\t'])
                        {
                            w += 1;
                            total += self.groups[f + w].len();
                        }
                    }
                    let (s, e) = self.span(f, f + w, kind);
                    out.push(Span::new(s, e, det));
                    f += w + 1;
                    consumed = f;
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
    const KEYS: [&[u8]; 5] = [b"ssn", b"ss#", b"s.s.n", b"social security", b"soc. sec"];
    KEYS.iter()
        .any(|k| window.windows(k.len()).any(|w| w.eq_ignore_ascii_case(k)))
}

/// Most characters between two digit groups of one card number, and most of
/// them that are not whitespace (`4111 - 1111`, `4111----1111`, `4111 | 1111`).
const CARD_GAP_CHARS: usize = 10;
const CARD_GAP_MARKS: usize = 4;
/// Fewest digits of a card that is a slice of a longer stream of digits, or
/// follows `+` or leading zeros (12-14 digit cards must stand alone).
const CARD_SLICE_MIN: usize = 15;

/// One digit group of a stream: its bytes and the marks (non-whitespace
/// characters) of the gap before it.
#[derive(Clone, Copy)]
struct CardGroup<'a> {
    start: usize,
    end: usize,
    marks: &'a str,
    /// The gap before it holds a line break (a card may be wrapped, but a
    /// group on a new line does not continue the grouping before it).
    line_break: bool,
    /// The gap before it holds a tab: a new column.
    tab: bool,
}

/// Finds card numbers however their digits are grouped or separated: a
/// backstop that judges the digits, since a card's own checks (Luhn and an
/// issuer prefix that fits the length) are strong.
///
/// The text is cut into *streams*: digit groups separated by short gaps of
/// characters that are neither letters nor digits (at most
/// [`CARD_GAP_CHARS`] characters, at most [`CARD_GAP_MARKS`] of them not
/// whitespace). Within a stream, a *window* starts at a group (or after the
/// leading zeros of one: `004111…`), ends at a group's end and holds 12-19
/// digits; it is a card when it passes the card checks and
///
/// * its groups are a card's grouping: one separator mark throughout
///   (whitespace may vary: `41 11 11 …`, `4111|1111|…`), or groups of three
///   digits or more (`4111 1111-1111 1111`, `41111111 11111111`), so dates
///   and times (`2026-11-30 19:15:05.123456`) are not cards;
/// * it holds 15 digits or more when it is a slice of the stream, starts
///   after `+` or after leading zeros: a 12-14 digit card must be the whole
///   stream (`+49 151 12345678` is a phone, `1234-5678-9012-3456` an
///   invoice number, not a card in its last 12 digits).
///
/// Longest first from the leftmost start. Nothing else around a full-length
/// window hides it: not a number before it (`ref 1234 4111 …`, `1.4111…`,
/// `+4111…`), not letters glued to it (`US4111…`; the digits of a valid IBAN
/// are the IBAN's), not a number after it (an expiry, a CVC).
fn scan_cards(text: &str, cands: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let mut groups: Vec<CardGroup<'_>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        let plus = text[..i].ends_with('+');
        let mut marks = "";
        let (mut line_break, mut tab) = (false, false);
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(CardGroup {
                start,
                end: i,
                marks,
                line_break,
                tab,
            });
            // The gap to the next group, if it is short and holds no letter.
            let (mut j, mut chars, mut nmarks) = (i, 0, 0);
            let (mut mark_from, mut mark_to) = (None, i);
            let (mut nl, mut tb) = (false, false);
            while let Some(c) = text[j..].chars().next() {
                if c.is_alphanumeric() {
                    break;
                }
                chars += 1;
                nl |= matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
                tb |= c == '\t';
                if !c.is_whitespace() {
                    nmarks += 1;
                    mark_from.get_or_insert(j);
                    mark_to = j + c.len_utf8();
                }
                j += c.len_utf8();
                if chars > CARD_GAP_CHARS || nmarks > CARD_GAP_MARKS {
                    break;
                }
            }
            if chars > 0
                && chars <= CARD_GAP_CHARS
                && nmarks <= CARD_GAP_MARKS
                && bytes.get(j).is_some_and(u8::is_ascii_digit)
            {
                marks = mark_from.map_or("", |f| &text[f..mark_to]);
                line_break = nl;
                tab = tb;
                i = j;
            } else {
                break;
            }
        }
        let total: usize = groups.iter().map(|g| g.end - g.start).sum();
        if total >= 12 {
            card_windows(bytes, &groups, plus, cands);
        }
    }
}

/// The card windows of one stream of digit groups (see [`scan_cards`]);
/// `plus`: the stream follows `+`.
fn card_windows(bytes: &[u8], groups: &[CardGroup<'_>], plus: bool, cands: &mut Vec<Span>) {
    let mut buf = [0u8; MAX_DIGITS];
    let mut lens = [0usize; MAX_DIGITS];
    // The group after the last card found: a card before it does not make
    // a short card a slice of a longer grouping.
    let mut after_card = usize::MAX;
    let mut g = 0;
    while g < groups.len() {
        let CardGroup {
            start: gs, end: ge, ..
        } = groups[g];
        // Starts: the group's first digit, and its first digit after leading zeros.
        let nonzero = (gs..ge).find(|&k| bytes[k] != b'0').unwrap_or(ge);
        let mut found = None;
        let starts = [Some(gs), (nonzero != gs && nonzero < ge).then_some(nonzero)];
        for start in starts.into_iter().flatten() {
            let prefixed = start != gs || (g == 0 && plus);
            let (mut n, mut best) = (0, None);
            // The longest window on one line wins over a longer one that
            // runs onto the next line (`6759 000 000 013⏎6759 …` is two
            // cards, not a 17-digit one and a rest).
            let (mut best_line, mut crossed) = (None, false);
            let mut uniform = true;
            for (l, group) in groups.iter().enumerate().skip(g) {
                let from = if l == g { start } else { group.start };
                if n + (group.end - from) > MAX_DIGITS {
                    break;
                }
                if l > g + 1 && group.marks != groups[g + 1].marks {
                    uniform = false;
                }
                lens[l - g] = group.end - from;
                crossed |= l > g && group.line_break;
                for &b in &bytes[from..group.end] {
                    buf[n] = b - b'0';
                    n += 1;
                }
                let w = &lens[..=l - g];
                if n >= 12
                    && card_grouping(w, uniform)
                    && (n >= CARD_SLICE_MIN
                        || short_card_stands(groups, g, l, w, prefixed, g == after_card))
                    && iin_fits(&buf[..n])
                    && luhn_digits(&buf[..n])
                {
                    best = Some((l, group.end));
                    if !crossed {
                        best_line = best;
                    }
                }
            }
            if let Some((l, e)) = best_line.or(best) {
                found = Some((start, l, e));
                break;
            }
        }
        match found {
            Some((start, l, e)) => {
                cands.push(Span::new(start, e, Detector::Card));
                g = l + 1;
                after_card = g;
            }
            None => g += 1,
        }
    }
}

/// Are group lengths `w` (one separator mark throughout: `uniform`) a card's
/// grouping? Groups of three digits or more (`4111 1111-1111 1111`,
/// `41111111 11111111`), or two groups (`4.111111111111111`), or one mark
/// throughout with the inner groups of one length, the first and last free
/// (`41 11 11 …`, `4 111 111 …`, `55 5555 5555 5544 44`), or with lengths
/// that never grow (`4111 1111 1111 11 11`): not a list of
/// small numbers (`19,50,83,6,9,68,…`, `1, 2, 3, …`) nor a date and time
/// (`2026-11-30 19:15:05.123456`).
fn card_grouping(w: &[usize], uniform: bool) -> bool {
    let k = w.len();
    if k <= 2 || w.iter().all(|&x| x >= 3) {
        return true;
    }
    // Or lengths that never grow (`4111 1111 1111 11 11`).
    uniform && (w[1..k - 1].iter().all(|&x| x == w[1]) || w.windows(2).all(|p| p[1] <= p[0]))
}

/// May a 12-14 digit window `g..=l` of lengths `w` stand as a card? Never
/// after `+` or leading zeros (`+49 151 12345678` is a phone). One group
/// (`30569309025904`) always. A window that starts its stream of digits or
/// follows a card found before, when it ends the stream or is followed by a
/// short group that does not continue its grouping (an expiry `12/28`, a CVC
/// `123`; a group on a new line never continues it): any grouping. Inside a
/// stream, only a card layout whose last group ends it (`4-4-4-2`, `4-6-4`,
/// `4-4-5`, `4-4-4-1`: Diners, Maestro, old Visa), or `4-4-4` that is not
/// part of a longer grouping of fours (`1234-5678-9012-3456` holds no
/// 12-digit card, `ref 6011,8474,1325,2995` neither).
fn short_card_stands(
    groups: &[CardGroup<'_>],
    g: usize,
    l: usize,
    w: &[usize],
    prefixed: bool,
    after_card: bool,
) -> bool {
    if prefixed {
        return false;
    }
    if w.len() == 1 {
        return true;
    }
    let len = |i: usize| groups[i].end - groups[i].start;
    let last = w[w.len() - 1];
    // The group after continues the grouping when it has the length the
    // window's last two groups share (`6011,8474,1325,2995`), not a last
    // group that ended a layout (`4222 2222 222 22 12/28`).
    let repeating = w.len() >= 2 && w[w.len() - 2] == last;
    let next_ok = groups.get(l + 1).is_none_or(|nx| {
        let continues = repeating && nx.marks == groups[l].marks && len(l + 1) == last;
        nx.line_break || (len(l + 1) <= 4 && !continues)
    });
    // A new line starts a stream as well (`+49 30 1234567⏎305693 09025904`).
    if (g == 0 || after_card || groups[g].line_break || groups[g].tab) && next_ok {
        return true;
    }
    match w {
        [4, 4, 4, 2] | [4, 6, 4] | [4, 4, 5] | [4, 4, 4, 1] => true,
        [4, 4, 4] => {
            let marks = groups[g + 1].marks;
            let four = |i: usize| len(i) == 4;
            let before = g > 0
                && !after_card
                && !groups[g].line_break
                && four(g - 1)
                && groups[g].marks == marks;
            let after = groups
                .get(l + 1)
                .is_some_and(|nx| !nx.line_break && four(l + 1) && nx.marks == marks);
            !before && !after
        }
        _ => false,
    }
}

/// Cuts `text` into runs of digit groups and searches each for phones and
/// SSNs. The digits of the cards found before (`cards`, sorted byte ranges)
/// belong to no run: a run ends where a card starts, so a phone right before
/// or after a card is judged on its own (`020 7946 0958 4111111111111111`).
fn scan_numbers(text: &str, cards: &[(usize, usize)], want_ssn: bool, cands: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    // Cards are sorted and disjoint: the one that may hold `at` is the last
    // starting at or before it (a binary search, not a scan per digit run).
    let in_card = |at: usize| {
        let i = cards.partition_point(|&(s, _)| s <= at);
        cards[..i].last().filter(|&&(_, e)| at < e).map(|c| c.1)
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        if let Some(end) = in_card(i) {
            i = end;
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
            if k > 0 && bytes.get(j).is_some_and(u8::is_ascii_digit) && in_card(j).is_none() {
                i = j;
            } else {
                break;
            }
        }
        // `+44 …`, and `+ 44 …` with one space after the `+`.
        let head_text = &text[..run_start];
        let lead = if head_text.ends_with('+') {
            run_start - 1
        } else if head_text.ends_with("+ ") && bytes[run_start] != b'0' {
            // `+ 020 7946 0958` is a list bullet before a national number.
            run_start - 2
        } else {
            run_start
        };
        let plus = lead < run_start;
        if plus && lead > 0 && bytes[lead - 1] == b'(' {
            groups[0].lp = true; // `(+49) 30 12345678`
        }
        let head = &bytes[..run_start];
        let intl =
            plus || head.len() >= 6 && head[head.len() - 6..].eq_ignore_ascii_case(b"wa.me/");
        let mut back = text[..lead].chars().rev();
        let prev = back.next();
        // After `+` the number is international whatever precedes it (`tel+44…`).
        let glued_before = !plus
            && (prev.is_some_and(is_word_char)
                || (prev == Some(',') && back.next().is_some_and(|c| c.is_ascii_digit())));
        let last_end = groups[groups.len() - 1].end;
        let glued_after = text[last_end..].chars().next().is_some_and(is_word_char);
        let run_digits: usize = groups.iter().map(Group::len).sum();
        let run = Run {
            text,
            groups: &groups,
            plus,
            lead,
            intl,
            glued_before,
            glued_after,
        };
        if run_digits < 8 {
            i = last_end.max(i);
            continue;
        }
        if want_ssn {
            run.search(Kind::Ssn, Detector::UsSsn, cands);
        }
        run.search(Kind::Phone, Detector::Phone, cands);
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
    let bytes = text.as_bytes();
    // All-ASCII text without escapes is scanned as it is.
    let needs_fold = !text.is_ascii()
        || memchr::memchr3(b'&', b'%', b'\\', bytes).is_some()
        || bytes.iter().any(|&b| is_ascii_hidden(b));
    if needs_fold {
        if let Some(folded) = Folded::new(text) {
            detect_raw(&folded.text, out);
            for s in out.iter_mut() {
                (s.start, s.end) = folded.original(s.start, s.end);
            }
            return;
        }
    }
    detect_raw(text, out);
}

/// A folded copy of a text and, for every byte of it, the byte range of the
/// original character it comes from.
struct Folded {
    text: String,
    /// `from[i]`: start of the original range of folded byte `i`.
    from: Vec<u32>,
    /// `to[i]`: end of the original range of folded byte `i`.
    to: Vec<u32>,
}

/// Characters that render as nothing and may hide inside data: format
/// characters (Unicode Cf), C1 controls, variation selectors, tag
/// characters, fillers and combining marks (an accent or a keycap on a
/// digit is still that digit).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}' | '\u{ad}' | '\u{300}'..='\u{36f}' | '\u{61c}'
        | '\u{115f}'..='\u{1160}' | '\u{17b4}'..='\u{17b5}' | '\u{180b}'..='\u{180f}'
        | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}' | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{20d0}'..='\u{20ff}'
        | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{fe20}'..='\u{fe2f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}')
}

/// ASCII control characters other than tab, line feed and carriage return
/// (those are ordinary separators): removed by the fold.
fn is_ascii_hidden(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f
}

/// Zeros of the Unicode decimal digit (Nd) blocks folded to ASCII digits.
const DIGIT_ZEROS: [u32; 26] = [
    0x0660, 0x06f0, 0x07c0, 0x0966, 0x09e6, 0x0a66, 0x0ae6, 0x0b66, 0x0be6, 0x0c66, 0x0ce6, 0x0d66,
    0x0de6, 0x0e50, 0x0ed0, 0x0f20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0xa8d0, 0xa900,
    0xaa50, 0xff10,
];

/// The ASCII character `c` folds to, `None` if it is removed; `c` itself if
/// it does not fold.
pub(crate) fn fold_char(c: char) -> Option<char> {
    let u = c as u32;
    if c.is_ascii() {
        // Vertical tab and form feed (a manual line break and a page break
        // in word processors) and the information separators break lines;
        // other controls are removed.
        if matches!(c, '\u{b}' | '\u{c}' | '\u{1c}'..='\u{1f}') {
            return Some('\n');
        }
        return (!is_ascii_hidden(c as u8)).then_some(c);
    }
    // Line breaks of other kinds (NEL, line and paragraph separators).
    if matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
        return Some('\n');
    }
    if is_invisible(c) {
        return None;
    }
    if (0x1d7ce..=0x1d7ff).contains(&u) {
        return char::from_digit((u - 0x1d7ce) % 10, 10);
    }
    if let Some(z) = DIGIT_ZEROS.iter().find(|&&z| (z..z + 10).contains(&u)) {
        return char::from_digit(u - z, 10);
    }
    Some(match c {
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(u - 0xfee0).unwrap_or(c),
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' => '-',
        // Marks typed for a dash: the Japanese long vowel mark (`090ー1234`),
        // its half-width form, the spacing modifier letters (`ˑ`, `ʼ`, `ˇ`).
        '\u{30fc}' | '\u{ff70}' | '\u{2b0}'..='\u{2ff}' => '-',
        // Circled, parenthesized, full-stop and dingbat digits (`④①①①`).
        '\u{24ea}' | '\u{24ff}' | '\u{1f100}' | '\u{1f10b}' | '\u{1f10c}' => '0',
        '\u{2460}'..='\u{2468}' => char::from_digit(u - 0x245f, 10).unwrap_or(c),
        '\u{2474}'..='\u{247c}' => char::from_digit(u - 0x2473, 10).unwrap_or(c),
        '\u{2488}'..='\u{2490}' => char::from_digit(u - 0x2487, 10).unwrap_or(c),
        '\u{24f5}'..='\u{24fd}' => char::from_digit(u - 0x24f4, 10).unwrap_or(c),
        '\u{2776}'..='\u{277e}' => char::from_digit(u - 0x2775, 10).unwrap_or(c),
        '\u{2780}'..='\u{2788}' => char::from_digit(u - 0x277f, 10).unwrap_or(c),
        '\u{278a}'..='\u{2792}' => char::from_digit(u - 0x2789, 10).unwrap_or(c),
        '\u{1f101}'..='\u{1f10a}' => char::from_digit(u - 0x1f101, 10).unwrap_or(c),
        '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => {
            ' '
        }
        // Superscript and subscript digits and signs (NFKC folds them).
        '\u{2070}' | '\u{2080}' => '0',
        '\u{b9}' | '\u{2081}' => '1',
        '\u{b2}' | '\u{2082}' => '2',
        '\u{b3}' | '\u{2083}' => '3',
        '\u{2074}'..='\u{2079}' => char::from_digit(u - 0x2070, 10).unwrap_or(c),
        '\u{2084}'..='\u{2089}' => char::from_digit(u - 0x2080, 10).unwrap_or(c),
        '\u{207a}' | '\u{208a}' | '\u{fe62}' => '+',
        '\u{fe6b}' => '@',
        '\u{2024}' | '\u{3002}' | '\u{ff61}' | '\u{fe52}' => '.',
        // CJK and mathematical brackets (`example【.】ai`).
        '\u{3010}' | '\u{3014}' | '\u{300c}' | '\u{300e}' | '\u{300a}' | '\u{3008}'
        | '\u{3018}' | '\u{301a}' | '\u{27e8}' | '\u{27e6}' | '\u{2045}' | '\u{2772}'
        | '\u{2039}' | '\u{ab}' | '\u{fe5d}' | '\u{fe59}' | '\u{2985}' => '[',
        '\u{3011}' | '\u{3015}' | '\u{300d}' | '\u{300f}' | '\u{300b}' | '\u{3009}'
        | '\u{3019}' | '\u{301b}' | '\u{27e9}' | '\u{27e7}' | '\u{2046}' | '\u{2773}'
        | '\u{203a}' | '\u{bb}' | '\u{fe5e}' | '\u{fe5a}' | '\u{2986}' => ']',
        _ => c,
    })
}

/// The character an HTML entity or a percent-escape at the start of `s`
/// stands for, and its length; only the forms that can hide data.
fn decode_escape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'\\') {
        // Escapes left in text by a careless producer: `\@` (Markdown),
        // `\u0040` and `\x40` (a JSON or C escape written out twice).
        return match b.get(1)? {
            b'@' | b'.' | b'+' | b'-' => Some((char::from(b[1]), 2)),
            // `\n`, `\t`, `\r` written out (JSON encoded twice): separators.
            b'n' | b't' | b'r' => Some((' ', 2)),
            b'u' | b'x' => {
                let n = if b[1] == b'u' { 4 } else { 2 };
                let hex = s.get(2..2 + n)?;
                if !hex.bytes().all(|x| x.is_ascii_hexdigit()) {
                    return None;
                }
                Some((char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 2 + n))
            }
            _ => None,
        };
    }
    if b.first() == Some(&b'%') {
        // `%40`, and encoded again as `%2540`, `%252540`, …
        let mut at = 1;
        loop {
            let hex = s.get(at..at + 2)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == b'%' && at < 32 {
                at += 2;
                continue;
            }
            // Line breaks and tabs (`%0A`, `%09`) separate like a space.
            if matches!(v, b'\n' | b'\r' | b'\t') {
                return Some((' ', at + 2));
            }
            return matches!(
                v,
                b'@' | b'+' | b'.' | b'-' | b' ' | b'(' | b')' | b'/' | b':' | b'[' | b']'
            )
            .then_some((char::from(v), at + 2));
        }
    }
    if b.get(1) == Some(&b'#') {
        // `&#64;`, `&#x40;`, and without the `;` as browsers read them (`&#64`).
        let hex = matches!(b.get(2), Some(b'x' | b'X'));
        let from = if hex { 3 } else { 2 };
        let len = b[from..]
            .iter()
            .take(8)
            .take_while(|x| {
                if hex {
                    x.is_ascii_hexdigit()
                } else {
                    x.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return None;
        }
        let body = &s[from..from + len];
        let v = if hex {
            u32::from_str_radix(body, 16).ok()?
        } else {
            body.parse::<u32>().ok()?
        };
        let end = from + len + usize::from(b.get(from + len) == Some(&b';'));
        return Some((char::from_u32(v)?, end));
    }
    const NAMED: [(&str, char); 15] = [
        ("&lbrack;", '['),
        ("&rbrack;", ']'),
        ("&lsqb;", '['),
        ("&rsqb;", ']'),
        ("&commat;", '@'),
        ("&plus;", '+'),
        ("&period;", '.'),
        ("&hyphen;", '-'),
        ("&dash;", '-'),
        ("&ndash;", '-'),
        ("&minus;", '-'),
        ("&nbsp;", ' '),
        ("&lpar;", '('),
        ("&rpar;", ')'),
        ("&sol;", '/'),
    ];
    NAMED
        .iter()
        .find(|(n, _)| b.len() >= n.len() && b[..n.len()].eq_ignore_ascii_case(n.as_bytes()))
        .map(|&(n, c)| (c, n.len()))
}

impl Folded {
    /// The folded copy, or `None` when folding changes nothing (or the text
    /// is too long for 32-bit offsets, far beyond any Kafka message).
    fn new(text: &str) -> Option<Folded> {
        u32::try_from(text.len()).ok()?;
        let mut f = Folded {
            text: String::with_capacity(text.len()),
            from: Vec::with_capacity(text.len()),
            to: Vec::with_capacity(text.len()),
        };
        let mut changed = false;
        let mut i = 0;
        while let Some(c) = text[i..].chars().next() {
            let (c, len) = match c {
                '&' | '%' | '\\' => decode_escape(&text[i..]).unwrap_or((c, 1)),
                _ => (c, c.len_utf8()),
            };
            let folded = fold_char(c);
            if len != c.len_utf8() || folded != Some(c) {
                changed = true;
            }
            if let Some(fc) = folded {
                f.text.push(fc);
                for _ in 0..fc.len_utf8() {
                    // In range: the text is shorter than u32::MAX bytes.
                    f.from.push(i as u32);
                    f.to.push((i + len) as u32);
                }
            }
            i += len;
        }
        changed.then_some(f)
    }

    /// The original byte range covering folded bytes `start..end`.
    fn original(&self, start: usize, end: usize) -> (usize, usize) {
        (self.from[start] as usize, self.to[end - 1] as usize)
    }
}

/// [`detect_into`] on text that needs no folding.
fn detect_raw(text: &str, out: &mut Vec<Span>) {
    // Cheap pre-checks: most free text has no '@', few digits, no ':'.
    let bytes = text.as_bytes();
    // Most free text has none of these: leave before the byte-by-byte pass.
    let obfuscated = obfuscation_hint(bytes);
    if !bytes.iter().any(u8::is_ascii_digit)
        && memchr::memchr3(b'@', b':', b'%', bytes).is_none()
        && !obfuscated
    {
        return;
    }
    let (mut ndigits, mut at, mut colon, mut pct) = (0usize, false, false, false);
    // `digit.digit` occurrences (an IPv4 address has three) and a letter pair
    // followed by two digits (an IBAN's start).
    let (mut dotted, mut iban_start) = (0usize, false);
    // The longest run of digits (an address written as one integer has 8-10).
    let (mut run, mut longest_run) = (0usize, 0usize);
    let (mut p1, mut p2, mut p3) = (0u8, 0u8, 0u8);
    for &b in bytes {
        if b.is_ascii_digit() {
            run += 1;
            longest_run = longest_run.max(run);
        } else {
            run = 0;
        }
        match b {
            b'0'..=b'9' => {
                ndigits += 1;
                // (`0xCB.0x00…`: a hex octet ends in a letter)
                if p1 == b'.' && p2.is_ascii_alphanumeric() {
                    dotted += 1;
                }
                // `DE89`, `DE 89`, `DE-89`.
                if (p1.is_ascii_digit() || p1.is_ascii_whitespace() || p1.is_ascii_punctuation())
                    && p2.is_ascii_alphabetic()
                    && p3.is_ascii_alphabetic()
                {
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
    if !at && ndigits == 0 && !colon && !pct && !obfuscated {
        return;
    }
    let p = &*PATTERNS;
    let mut cands: Vec<Span> = Vec::new();
    // What follows or precedes each `@`: the rarer address forms run only
    // where they can match (most text with an `@` holds a plain address).
    let (mut at_spaced, mut at_literal) = (false, false);
    if at {
        for i in memchr::memchr_iter(b'@', bytes) {
            let next = bytes.get(i + 1).copied().unwrap_or(b'x');
            let prev = if i > 0 { bytes[i - 1] } else { b'x' };
            // Spaces or a comment at the `@`, or spaces at a dot after it.
            let after = &bytes[i + 1..bytes.len().min(i + 256)];
            at_spaced |= matches!(next, b' ' | b'\t' | b'\n' | b'\r' | b'(')
                || matches!(prev, b' ' | b'\t' | b'\n' | b'\r' | b')')
                || after.windows(2).any(|w| {
                    (w[0].is_ascii_whitespace() && w[1] == b'.')
                        || (w[0] == b'.' && w[1].is_ascii_whitespace())
                });
            at_literal |= next == b'[' || next.is_ascii_digit();
        }
    }
    let brackets =
        memchr::memchr3(b'[', b'(', b'{', bytes).is_some() || memchr::memchr(b'<', bytes).is_some();
    if at {
        for m in p.email.find_iter(text) {
            if let Some(start) = email_valid(text, m.start(), m.end()) {
                cands.push(Span::new(start, m.end(), Detector::Email));
            }
        }
        if memchr::memmem::find(bytes, b"\"@").is_some() {
            for m in p.email_quoted.find_iter(text) {
                let local = m.as_str().find("\"@").unwrap_or(0);
                if local <= 66 && email_valid(text, m.start(), m.end()).is_some() {
                    cands.push(Span::new(m.start(), m.end(), Detector::Email));
                }
            }
        }
        for m in p.email_spaced.find_iter(text).take_while(|_| at_spaced) {
            let t = m.as_str();
            let at_end = t.find('@').map_or(0, |i| i + 1);
            // The address may end before a sentence (`ada @ example.com. Bye`).
            let end = if plausible_tld(t.rsplit('.').next().unwrap_or("").trim()) {
                Some(t.len())
            } else {
                trim_to_tld(t, at_end)
            };
            let Some(end) = end else { continue };
            let t = &t[..end];
            let spaced = t.contains(|c: char| c.is_whitespace() || c == '(');
            // `a @ b . com` reads as a placeholder, not a mailbox.
            let (local, domain) = t.split_once('@').unwrap_or_default();
            let named = |part: &str| part.chars().filter(|c| c.is_alphanumeric()).count() >= 2;
            if spaced
                && named(local)
                && named(domain.trim_start().split(['.', ' ']).next().unwrap_or(""))
            {
                cands.push(Span::new(m.start(), m.start() + end, Detector::Email));
            }
        }
        if at_literal {
            for m in p.email_literal.find_iter(text) {
                cands.push(Span::new(m.start(), m.end(), Detector::Email));
            }
        }
        if memchr::memchr(b'<', bytes).is_some() {
            for c in p.email_angle.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    if email_valid(text, m.start(), m.end()).is_some() {
                        cands.push(Span::new(m.start(), m.end(), Detector::Email));
                    }
                }
            }
        }
    }
    if pct && ndigits >= 2 && memchr::memmem::find(bytes, b"%40").is_some() {
        for m in p.email_encoded.find_iter(text) {
            if let Some(start) = email_valid(text, m.start(), m.end()) {
                cands.push(Span::new(start, m.end(), Detector::Email));
            }
        }
    }
    if obfuscated || (at && brackets) {
        // `ada [at] example [dot] com`, and a defanged dot after a real `@`
        // (`ada@gmail[.]com`, `ada@gmail dot com`); a plain address is the
        // e-mail pattern's (this one needs a bracket or a spelled word).
        for m in p.email_bracketed.find_iter(text) {
            let t = m.as_str();
            let lower = t.to_ascii_lowercase();
            let bracketed = t.contains(['[', '(', '{', '<']);
            let defanged = bracketed || lower.contains(" dot ");
            let tld = t
                .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .next();
            // After a real `@`: a bracketed dot is enough (`@example[.]ai`);
            // a spelled ` dot ` needs a common top-level domain (`meet @ 10
            // dot 30` is not an address).
            let end = if let Some(at) = t.find('@') {
                if bracketed || (defanged && tld.is_some_and(plausible_tld)) {
                    Some(t.len())
                } else if defanged {
                    trim_to_tld(t, at + 1)
                } else {
                    None
                }
            } else {
                bracketed_at(&lower).then_some(t.len())
            };
            if let Some(end) = end {
                cands.push(Span::new(m.start(), m.start() + end, Detector::Email));
            }
        }
        // A refused match (`reach me at ada.lovelace at gmail dot com`: `me`
        // is a prose word) is retried after its mailbox name, so it does not
        // hide the address that follows.
        let mut from = if obfuscated { 0 } else { text.len() };
        while let Some(c) = p.email_spelled.captures_at(text, from) {
            let (Some(m), Some(local)) = (c.get(0), c.get(1)) else {
                break;
            };
            let tld = m
                .as_str()
                .rsplit(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-')
                .next();
            let at_end = local.end() - m.start() + 1;
            let end = if tld.is_some_and(plausible_tld) {
                Some(m.end())
            } else {
                trim_to_tld(m.as_str(), at_end).map(|k| m.start() + k)
            };
            match end {
                Some(end) if !is_stop_word(local.as_str()) => {
                    cands.push(Span::new(m.start(), end, Detector::Email));
                    from = end;
                }
                _ => from = local.end(),
            }
        }
    }
    if ndigits >= 12 {
        scan_cards(text, &mut cands);
    }
    if ndigits >= 8 {
        // A card right after `+` or `0` may be an international phone too:
        // both are searched (and merged into one span).
        let mut cards: Vec<(usize, usize)> = cands
            .iter()
            .filter(|c| {
                c.detector == Detector::Card
                    && !(c.start > 0 && matches!(bytes[c.start - 1], b'+' | b'0'))
            })
            .map(|c| (c.start, c.end))
            .collect();
        cards.sort_unstable(); // in order already; scan_numbers relies on it
        scan_numbers(text, &cards, ndigits >= 9, &mut cands);
    }
    if iban_start && bytes.len() >= 15 {
        scan_ibans(text, &mut cands);
    }
    if dotted >= 3 {
        for m in p.ipv4.find_iter(text) {
            let dotted_before = m.start() >= 2
                && bytes[m.start() - 1] == b'.'
                && bytes[m.start() - 2].is_ascii_digit();
            let dotted_after = bytes.get(m.end()) == Some(&b'.')
                && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
            // 0.x.x.x is never a host's address (`0.4.2.1-alpha` is a version).
            // 0.x.x.x is never a host's address (`0.4.2.1-alpha` is a version).
            if !dotted_before && !dotted_after && ipv4_octets(m.as_str()).is_some_and(|o| o[0] != 0)
            {
                cands.push(Span::new(m.start(), m.end(), Detector::Ipv4));
            }
        }
    }
    if ndigits >= 4 && memchr::memchr2(b'-', b'_', bytes).is_some() {
        for c in p.ipv4_dashed.captures_iter(text) {
            let Some(m) = c.get(2) else { continue };
            let hosty = c.get(1).is_some() || c.get(3).is_some();
            // Not a slice of a longer dashed number (`2026-11-30-12-00`).
            let next = bytes.get(m.end()).copied();
            let more = matches!(next, Some(b'-' | b'_'))
                && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
            let glued = next.is_some_and(|b| b.is_ascii_digit());
            // Nor the tail of a dashed hex sequence (`MAC B2-E9-21-23-90-51`).
            let start = c.get(0).map_or(m.start(), |w| w.start());
            let in_seq = start > 0 && matches!(bytes[start - 1], b'-' | b'_' | b':');
            let more = more || in_seq;
            if hosty
                && !more
                && !glued
                && ipv4_octets(&m.as_str().replace(['-', '_'], ".")).is_some()
            {
                cands.push(Span::new(m.start(), m.end(), Detector::Ipv4));
            }
        }
    }
    if longest_run >= 8 {
        for c in p.ipv4_int.captures_iter(text) {
            if let Some(m) = c.get(1) {
                let v: u64 = m.as_str().parse().unwrap_or(0);
                if (1 << 24..=u64::from(u32::MAX)).contains(&v) {
                    cands.push(Span::new(m.start(), m.end(), Detector::Ipv4));
                }
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
    // Digits inside a valid IBAN are the IBAN's, not a card's.
    if cands.iter().any(|c| c.detector == Detector::Iban) {
        let ibans: Vec<(usize, usize)> = cands
            .iter()
            .filter(|c| c.detector == Detector::Iban)
            .map(|c| (c.start, c.end))
            .collect();
        cands.retain(|c| {
            c.detector != Detector::Card || !ibans.iter().any(|&(s, e)| s <= c.start && c.end <= e)
        });
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

/// An e-mail match stands on its own (the next character does not continue
/// a word, the domain is at most 255 characters): the start of the address,
/// the longest valid local part of at most 64 characters ending at the `@`
/// (padding before an address does not hide it).
fn email_valid(text: &str, start: usize, end: usize) -> Option<usize> {
    let m = &text[start..end];
    let local_len = m.find('@').or_else(|| m.find("%40")).unwrap_or(m.len());
    let ok = m[local_len..].chars().count() <= 256
        && !m.ends_with('-')
        && !text[end..]
            .chars()
            .next()
            .is_some_and(|c| (is_word_char(c) && c != '_') || c == '@');
    if !ok {
        return None;
    }
    let local = &m[..local_len];
    let count = local.chars().count();
    if count <= 64 {
        return Some(start);
    }
    let can_start = |c: char| c.is_alphanumeric() || matches!(c, '_' | '%' | '+' | '-');
    local
        .char_indices()
        .skip(count - 64)
        .find(|&(_, c)| can_start(c))
        .map(|(o, _)| start + o)
}

/// Does the text hold `at]`, `at)`, `(at`, ` at `, … or `dot` (an obfuscated
/// address)?
fn obfuscation_hint(bytes: &[u8]) -> bool {
    // Every hint holds a `t`: look only there.
    memchr::memchr2_iter(b't', b'T', bytes).any(|i| {
        let before = |k: usize| i.checked_sub(k).map(|j| bytes[j].to_ascii_lowercase());
        let (b1, b2) = (before(1), before(2));
        let after = bytes.get(i + 1).copied();
        (b1 == Some(b'o') && b2 == Some(b'd'))
            // ` at ` (`ada at example.com`)
            || (b1 == Some(b'a')
                && b2.is_some_and(|b| b.is_ascii_whitespace())
                && after.is_some_and(|b| b.is_ascii_whitespace()))
            || (b1 == Some(b'a')
                && (matches!(after, Some(b']' | b')' | b'}' | b'>'))
                    || matches!(b2, Some(b'[' | b'(' | b'{' | b'<'))))
    })
}

/// The length of the longest prefix of the match `t`, past byte `min` (the
/// end of its `@` or ` at `), that ends with a label that is a common
/// top-level domain, with a dot before it: `ada at example dot com. Thanks`
/// matched `. Thanks` as one more label, `ada at example dot com` is the
/// address.
fn trim_to_tld(t: &str, min: usize) -> Option<usize> {
    let min = (min..=t.len()).find(|&i| t.is_char_boundary(i))?;
    let bounds: Vec<usize> = t
        .char_indices()
        .map(|(i, _)| i)
        .filter(|&i| i > min)
        .collect();
    let ends = bounds.into_iter().rev().filter(|&i| {
        let c = t[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        c && t[i..]
            .chars()
            .next()
            .is_some_and(|n| !n.is_alphanumeric() && n != '-')
    });
    for end in ends {
        let head = &t[..end];
        let label_start = head
            .char_indices()
            .rev()
            .find(|&(_, c)| !c.is_alphanumeric() && c != '-')
            .map_or(0, |(i, c)| i + c.len_utf8());
        let before = head[min..label_start].to_ascii_lowercase();
        let dotted = before.trim_end().ends_with('.')
            || before.trim_end().ends_with(" dot")
            || before.contains(']')
            || before.contains(')');
        if label_start > min && dotted && plausible_tld(&head[label_start..]) {
            return Some(end);
        }
    }
    None
}

/// Does lower-cased `t` hold `at` inside brackets (`[at]`, `( at )`, `{at}`, `<at>`)?
fn bracketed_at(t: &str) -> bool {
    let b = t.as_bytes();
    memchr::memmem::find_iter(b, b"at").any(|i| {
        let before = b[..i].iter().rev().find(|c| !c.is_ascii_whitespace());
        let after = b[i + 2..].iter().find(|c| !c.is_ascii_whitespace());
        matches!(before, Some(b'[' | b'(' | b'{' | b'<'))
            && matches!(after, Some(b']' | b')' | b'}' | b'>'))
    })
}

/// Top-level domains common enough to accept `ada at example dot com`.
fn plausible_tld(tld: &str) -> bool {
    const TLDS: [&str; 48] = [
        "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "io", "co", "me", "app",
        "dev", "eu", "de", "uk", "fr", "it", "es", "nl", "be", "ch", "at", "pl", "pt", "se", "no",
        "dk", "fi", "ie", "cz", "gr", "hu", "ro", "ru", "ua", "jp", "cn", "in", "br", "au", "ca",
        "us", "mx", "ar", "za", "nz",
    ];
    TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))
}

/// Words that precede ` at ` in prose (`email at example dot com`, `work at
/// acme dot com`) rather than being a mailbox name.
fn is_stop_word(local: &str) -> bool {
    const WORDS: &[&str] = &[
        "email",
        "e-mail",
        "mail",
        "me",
        "us",
        "you",
        "him",
        "her",
        "them",
        "it",
        "we",
        "i",
        "write",
        "contact",
        "reach",
        "find",
        "work",
        "works",
        "worked",
        "working",
        "live",
        "lives",
        "be",
        "is",
        "are",
        "was",
        "were",
        "here",
        "there",
        "available",
        "look",
        "looking",
        "meet",
        "met",
        "arrive",
        "arrived",
        "stay",
        "staying",
        "based",
        "located",
        "sign",
        "shop",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(local))
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// Finds IBANs: a known country code (capitals, or lower case not glued to
/// a word), check digits, then alphanumerics with up to two of space, `-`,
/// `.` between any two of them, exactly the country's length, mod-97 valid.
/// What follows does not matter (`DE89…3000` then `12`, or a second IBAN).
fn scan_ibans(text: &str, cands: &mut Vec<Span>) {
    let b = text.as_bytes();
    // White space (line breaks in wrapped text too), any ASCII punctuation,
    // and any other character that is neither a letter nor a digit (`·`,
    // `•`): up to three of them between two characters of the IBAN.
    let is_sep = |c: u8| c.is_ascii_whitespace() || c.is_ascii_punctuation() || c >= 0x80;
    let mut i = 0;
    while i + 15 <= b.len() {
        let (c0, c1) = (b[i], b[i + 1]);
        // Two letters, then a digit after at most two separators.
        let digit_next = (i + 2..i + 5)
            .find(|&j| !is_sep(b[j]))
            .is_some_and(|j| b[j].is_ascii_digit());
        if !c0.is_ascii_alphabetic() || !c1.is_ascii_alphabetic() || !digit_next {
            i += 1;
            continue;
        }
        let upper = c0.is_ascii_uppercase() && c1.is_ascii_uppercase();
        let glued = i > 0 && b[i - 1].is_ascii_alphanumeric();
        // Lower or mixed case (`de89…`, `De89…`) only when not glued to a word.
        let lower = !glued;
        let cc = [c0.to_ascii_uppercase(), c1.to_ascii_uppercase()];
        let len = (upper || lower)
            .then(|| IBAN_LENGTHS.iter().find(|(c, _)| **c == cc))
            .flatten()
            .map_or(0, |&(_, n)| usize::from(n));
        if len == 0 {
            i += 1;
            continue;
        }
        let mut compact = [0u8; 34];
        let (mut n, mut j, mut end) = (0, i, i);
        while n < len && j < b.len() {
            if b[j].is_ascii_alphanumeric() {
                compact[n] = b[j].to_ascii_uppercase();
                n += 1;
                j += 1;
                end = j;
                if n == 4 && !compact[2..4].iter().all(u8::is_ascii_digit) {
                    break;
                }
            } else if n >= 2 && is_sep(b[j]) {
                // Up to four separator characters (not bytes): ` -- `.
                let mut chars = 0;
                while chars < 4 {
                    match text[j..].chars().next() {
                        Some(c)
                            if !c.is_alphanumeric()
                                && (c.is_whitespace()
                                    || is_sep(c as u32 as u8)
                                    || !c.is_ascii()) =>
                        {
                            j += c.len_utf8();
                            chars += 1;
                        }
                        _ => break,
                    }
                }
                if !b.get(j).is_some_and(u8::is_ascii_alphanumeric) {
                    break;
                }
            } else {
                break;
            }
        }
        if n == len && iban_compact_valid(&compact[..n]) {
            cands.push(Span::new(i, end, Detector::Iban));
            i = end;
        } else {
            i += 1;
        }
    }
}

/// The octets of a dotted IPv4 address: decimal (leading zeros allowed) or
/// `0x` hexadecimal, each at most 255. Four zero-padded two-digit parts
/// (`01.02.03.04`) are a date or time, not an address.
fn ipv4_octets(s: &str) -> Option<[u8; 4]> {
    if s.split('.').all(|p| p.len() == 2 && p.starts_with('0')) {
        return None;
    }
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut out {
        let p = parts.next()?;
        let v = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => p.parse::<u32>().ok()?,
        };
        *o = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(out)
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
        // A 12-14 digit slice of a longer grouping is not a card of its own.
        check("invoice 1234-5678-9012-3456", &[]);
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
        // Mixed separators between groups of four: still a card.
        check(
            "card 4111 1111-1111 1111",
            &[("4111 1111-1111 1111", Detector::Card)],
        );
        // Mixed separators between short groups: a date and a time.
        check("due 2026-11-30 19:15:05.123456", &[]);
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

    // Red-team findings (second round): each reproducer must yield a span of
    // the right detector covering the data.

    /// Some span covers `data` (found in `text`) entirely, whatever its detector.
    fn covered_whole(text: &str, data: &str) {
        let at = text.find(data).expect("data in text");
        let spans = detect(text);
        assert!(
            spans
                .iter()
                .any(|s| s.start <= at && s.end >= at + data.len()),
            "{data:?} not covered whole in {text:?}: {spans:?}"
        );
    }

    /// A span of `d` covers `data` (found in `text`) entirely.
    fn covers(text: &str, data: &str, d: Detector) {
        let at = text
            .find(data)
            .unwrap_or_else(|| panic!("{data:?} not in {text:?}"));
        let spans = detect(text);
        assert!(
            spans
                .iter()
                .any(|s| s.start <= at && s.end >= at + data.len() && s.detectors.contains(d)),
            "{d:?} {data:?} not covered in {text:?}: {:?}",
            spans
                .iter()
                .map(|s| (&text[s.start..s.end], s.detector))
                .collect::<Vec<_>>()
        );
        for s in &spans {
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        }
    }

    #[test]
    fn l1_cards_next_to_four_digit_groups() {
        let t = "pay 5555 5555 5555 4444 4111 1111 1111 1111";
        covers(t, "5555 5555 5555 4444", Detector::Card);
        covers(t, "4111 1111 1111 1111", Detector::Card);
        for t in [
            "card 4111 1111 1111 1111 1227",
            "card 4111 1111 1111 1111 2345",
            "card 4111-1111-1111-1111-2345",
        ] {
            covers(t, &t[5..24], Detector::Card);
        }
        // A full-length card after another number is a card (round 3).
        check(
            "ref 1234 4111 1111 1111 1111",
            &[("4111 1111 1111 1111", Detector::Card)],
        );
    }

    /// Red-team round 3: separators, positions and groupings the window
    /// search missed; each of these reached analytics in clear before the
    /// card backstop.
    #[test]
    fn l3_cards_any_separator_position_and_grouping() {
        for sep in [
            "|", ":", ";", "~", "\u{b7}", "\u{2022}", "--", " | ", " -- ",
        ] {
            let c = ["4111", "1111", "1111", "1111"].join(sep);
            covers(&format!("card {c} ok"), &c, Detector::Card);
        }
        for (t, c) in [
            ("order 123456 4111111111111111", "4111111111111111"),
            ("+4111111111111111", "4111111111111111"),
            ("004111111111111111", "4111111111111111"),
            ("1.4111111111111111", "4111111111111111"),
            ("US4111111111111111", "4111111111111111"),
            ("card US4111111111111111 ok", "4111111111111111"),
            ("41111111 11111111", "41111111 11111111"),
            ("411111 1111111111", "411111 1111111111"),
            ("4111 11111111 1111", "4111 11111111 1111"),
            ("value 4.111111111111111E15 here", "4.111111111111111"),
        ] {
            covers(t, c, Detector::Card);
        }
        // A phone next to a card is found too, on either side.
        for t in [
            "4111111111111111 020 7946 0958",
            "call 020 7946 0958 4111111111111111",
        ] {
            covers(t, "4111111111111111", Detector::Card);
            covers(t, "020 7946 0958", Detector::Phone);
        }
        // A phone after `+` that passes Luhn is a phone, not a 13-digit card.
        check("+49 151 12345678", &[("+49 151 12345678", Detector::Phone)]);
        // Short Maestro-length slices of references stay references.
        check("ref 6011,8474,1325,2995", &[]);
        check("tracking 7489 1234 5678 9012 3456", &[]);
    }

    /// Red-team round 3: e-mail addresses written with spaces, comments, a
    /// spelled-out `at`, entities without `;`, double percent-encoding and
    /// domain literals.
    #[test]
    fn l3_email_variants() {
        for (t, e) in [
            ("mail ada @ example . com now", "ada @ example . com"),
            ("mail ada(comment)@example.com", "ada(comment)@example.com"),
            ("mail ada@(comment)example.com", "ada@(comment)example.com"),
            ("write to ada at example.com", "ada at example.com"),
            ("write to ada at example . com", "ada at example . com"),
            ("ada&#64example.com", "ada&#64example.com"),
            ("ada%2540example.com", "ada%2540example.com"),
            ("ada%252540example.com", "ada%252540example.com"),
            ("to ada@[192.168.1.1] now", "ada@[192.168.1.1]"),
            ("to ada@[IPv6:2001:db8::1] now", "ada@[IPv6:2001:db8::1]"),
        ] {
            covers(t, e, Detector::Email);
        }
        // Prose with `at` and a dotted word is not an address.
        check("I work at acme.com", &[]);
        check("see you at 10.30", &[]);
        check("rated 5 @ 3.50 each", &[]);
    }

    /// Red-team round 3, second pass: wrapped IBANs, RU national phones,
    /// Japanese long vowel marks and modifier letters as dashes, circled
    /// digits, escapes left in text, more e-mail and IPv4 forms.
    #[test]
    fn l3_wrapped_ibans_ru_phones_jp_dashes_circled_digits() {
        for t in [
            "DE89\n3704\n0044\n0532\n0130\n00",
            "DE89\r\n3704\r\n0044\r\n0532\r\n0130\r\n00",
            "DE89\t3704\t0044\t0532\t0130\t00",
            "DE89 3704 0044\n0532 0130 00",
            "De89370400440532013000",
            "DE89/3704/0044/0532/0130/00",
            "DE89 - 3704 - 0044 - 0532 - 0130 - 00",
        ] {
            covers(&format!("iban {t} ok"), t, Detector::Iban);
        }
        for t in [
            "8 (912) 345-67-89",
            "8 912 345 67 89",
            "8-912-345-67-89",
            "89123456789",
            "8 (495) 123-45-67",
            "8-800-555-35-35",
            "090\u{30fc}1234\u{30fc}5678",
            "+44\u{30fc}20\u{30fc}7946\u{30fc}0958",
            "+49 (0)171/1234 567",
            "+49 30/1234 5678",
            "+ 44 20 7946 0958",
            "00447700900123",
        ] {
            covers(&format!("tel {t} ok"), t, Detector::Phone);
        }
        for t in [
            "4111\u{30fc}1111\u{30fc}1111\u{30fc}1111",
            "4111\u{2d1}1111\u{2d1}1111\u{2d1}1111",
            "\u{2463}\u{2460}\u{2460}\u{2460} \u{2460}\u{2460}\u{2460}\u{2460} \u{2460}\u{2460}\u{2460}\u{2460} \u{2460}\u{2460}\u{2460}\u{2460}",
            "\u{2779}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}\u{2776}",
        ] {
            covers(&format!("card {t} ok"), t, Detector::Card);
        }
        for t in [
            "078\u{30fc}05\u{30fc}1120",
            "078 - 05 - 1120",
            "078_05_1120",
        ] {
            covers(&format!("ssn {t} ok"), t, Detector::UsSsn);
        }
        for t in [
            "ada{x}@example.com",
            "\"ada@home\"@example.com",
            "ada\\@example.com",
            "ada\\u0040example.com",
            "ada.lovelace@10.0.0.5",
        ] {
            covers(&format!("mail {t} ok"), t, Detector::Email);
        }
        for t in ["0xCB.0x00.0x71.0x2D", "0xCB.0.113.45"] {
            covers(&format!("from {t} ok"), t, Detector::Ipv4);
        }
        covers(
            "host ip-203-0-113-45.ec2.internal",
            "203-0-113-45",
            Detector::Ipv4,
        );
        // Query strings keep their parameter names.
        check(
            "?to=ada@example.com&x=1",
            &[("ada@example.com", Detector::Email)],
        );
    }

    /// Red-team round 4 (final): each of these reached analytics in clear.
    #[test]
    fn l4_bullets_short_cards_defanged_dots_gaps_and_hosts() {
        // `+ ` as a list bullet before a national number.
        for t in ["+ 020 7946 0958", "+ 06 12 34 56 78", "+ 090-1234-5678"] {
            covers(&format!("list\n{t}\n"), &t[2..], Detector::Phone);
        }
        // 12-14 digit cards before an expiry or a CVC, and after a card.
        for (t, c) in [
            ("Diners 3056 9309 0259 04 12/28", "3056 9309 0259 04"),
            ("card 30569309025904 123", "30569309025904"),
            ("Diners 36000000000008, 12/28", "36000000000008"),
            ("5018 0000 0009 12/28", "5018 0000 0009"),
            ("4222222222222 123", "4222222222222"),
            (
                "cards 3056 9309 0259 04, 3852 0000 0232 37",
                "3852 0000 0232 37",
            ),
            ("4111 1111 1111 1111 5018 0000 0009", "5018 0000 0009"),
        ] {
            covers(t, c, Detector::Card);
        }
        // A defanged dot after a real `@` or a bracketed/spelled `at`.
        for t in [
            "ada.lovelace@gmail[dot]com",
            "ada.lovelace@gmail(dot)com",
            "ada.lovelace@gmail dot com",
            "ada.lovelace@gmail[.]com",
            "ada.lovelace[at]gmail[.]com",
            "ada.lovelace at gmail[.]com",
        ] {
            covers(&format!("mail {t} ok"), t, Detector::Email);
        }
        // Longer gaps and more separators.
        for t in [
            "4111----1111----1111----1111",
            "4111 - - - - 1111 1111 1111",
            "4111\\n1111\\n1111\\n1111",
        ] {
            covers(&format!("card {t} ok"), t, Detector::Card);
        }
        for t in [
            "DE89;3704;0044;0532;0130;00",
            "DE89 -- 3704 -- 0044 -- 0532 -- 0130 -- 00",
            "DE-89-3704-0044-0532-0130-00",
            "DE89\u{2022}3704\u{2022}0044\u{2022}0532\u{2022}0130\u{2022}00",
            "DE89\\n3704\\n0044\\n0532\\n0130\\n00",
        ] {
            covers(&format!("iban {t} ok"), t, Detector::Iban);
        }
        // Addresses in host names.
        for (t, ip) in [
            ("ec2-203-0-113-45.compute-1.amazonaws.com", "203-0-113-45"),
            ("pool-71-170-3-12.dllstx.fios.verizon.net", "71-170-3-12"),
            ("203-0-113-45.sslip.io", "203-0-113-45"),
            ("ip_203_0_113_45", "203_0_113_45"),
        ] {
            covers(t, ip, Detector::Ipv4);
        }
        // More national phones.
        for t in [
            "8 (3452) 12-34-56",
            "8 (84431) 2-34-56",
            "8 9123456789",
            "8 (727) 123-45-67",
            "00 44 20 7946 0958",
        ] {
            covers(&format!("tel {t} ok"), t, Detector::Phone);
        }
        covers(
            "\u{2783}\u{1f10b}\u{1f10b}\u{1f10b} \u{1f10b}\u{1f10b}\u{1f10b}\u{1f10b} \u{1f10b}\u{1f10b}\u{1f10b}\u{1f10b} \u{1f10b}\u{1f10b}\u{1f10b}\u{2781}",
            "\u{2783}",
            Detector::Card,
        );
        // Not cards: lists of small numbers, counting, dates, MAC addresses.
        check("19,50,83,6,9,68,12,46,74,7,64,27,4", &[]);
        check("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16", &[]);
        check("MAC B2-E9-21-23-90-51", &[]);
        check("I work at acme.com", &[]);
    }

    /// Red-team round 5: short first or last groups, short cards after other
    /// numbers, and `[at]` or a defanged dot after prose with ` at `.
    #[test]
    fn l5_short_groups_short_cards_anywhere_and_at_after_prose() {
        for t in [
            "55 5555 5555 5544 44",
            "4111 1111 1111 11 11",
            "41 111 111 111 111 11",
            "4 111 111 111 111 111",
            "3 782 822 463 100 05",
        ] {
            covers(&format!("card: {t} ok"), t, Detector::Card);
        }
        for (t, c) in [
            ("8, 3056 9309 0259 04 00", "3056 9309 0259 04"),
            ("1) 3056 9309 0259 04", "3056 9309 0259 04"),
            ("ref 1234 3056 9309 0259 04", "3056 9309 0259 04"),
            ("3056 9309 0259 04\n3852 0000 0232 37", "3852 0000 0232 37"),
            ("5018 0000 0009\n5018 0000 0009", "5018 0000 0009"),
            ("3056 9309 0259 04 4111 1111 1111 1111", "3056 9309 0259 04"),
            (
                "DE89 3704 0044 0532 0130 00 3056 9309 0259 04",
                "3056 9309 0259 04",
            ),
            ("3056 9309 0259 04 1228", "3056 9309 0259 04"),
        ] {
            covers(t, c, Detector::Card);
        }
        let both = "020 7946 0958 3056 9309 0259 04";
        covers(both, "020 7946 0958", Detector::Phone);
        covers(both, "3056 9309 0259 04", Detector::Card);
        for (t, e) in [
            (
                "reach me at ada.lovelace(at)gmail(dot)com",
                "ada.lovelace(at)gmail(dot)com",
            ),
            (
                "hi at ada.lovelace [at] gmail.com",
                "ada.lovelace [at] gmail.com",
            ),
            (
                "reach me at ada.lovelace@gmail[.]com",
                "ada.lovelace@gmail[.]com",
            ),
            (
                "Contact Ada at ada.lovelace@gmail dot com",
                "ada.lovelace@gmail dot com",
            ),
            (
                "reach me at ada.lovelace at gmail dot com",
                "ada.lovelace at gmail dot com",
            ),
            (
                "reach me at\nada.lovelace@gmail[.]com",
                "ada.lovelace@gmail[.]com",
            ),
        ] {
            covers(t, e, Detector::Email);
        }
        check("meet @ 10 dot 30", &[]);
        check("meet me at the park dot com", &[]);
        check("tracking 7489 1234 5678 9012 3456", &[]);
    }

    /// Red-team round 6: short cards standing alone in any grouping, wrapped
    /// over lines; a bracketed dot after `@` with any top-level domain;
    /// percent-encoded line breaks.
    #[test]
    fn l6_short_cards_any_grouping_alone_and_wrapped() {
        for t in [
            "3056 9309 025904",
            "305693 09025904",
            "3056 93090 25904",
            "3852 0000 023 237",
            "4222 222 222 222",
            "501 800 000 009",
            "30 56 93 09 02 59 04",
            "3056 9309\n0259 04",
            "3056\n9309 0259 04",
            "3056 9309\r\n0259 04",
            "4111%0A1111%0A1111%0A1111",
        ] {
            covers(&format!("card: {t} exp 12/28"), t, Detector::Card);
        }
        covers(
            "5018 0000 0009\n5018 0000 0009",
            "5018 0000 0009",
            Detector::Card,
        );
        covers(
            "mail ada.lovelace@example[.]ai ok",
            "ada.lovelace@example[.]ai",
            Detector::Email,
        );
        check("1234-5678-9012-3456", &[]);
        check("meet @ 10 dot 30", &[]);
    }

    /// Red-team round 7: internationalised addresses in obfuscated forms,
    /// cards one per line, other brackets and escaped brackets.
    #[test]
    fn l7_idn_obfuscated_addresses_and_cards_per_line() {
        for t in [
            "ada@münchen[.]de",
            "josé@example[.]ai",
            "ada@bücher(.)ch",
            "ada[at]bücher[.]ch",
            "ada@пример[.]рф",
            "ada@bücher dot com",
            "ada@bücher . com",
            "ada.lovelace@example%5B.%5Dai",
            "ada.lovelace@example&lbrack;.&rbrack;ai",
            "ada.lovelace@example\u{3010}.\u{3011}ai",
        ] {
            covers(&format!("Kontakt: {t} bitte"), t, Detector::Email);
        }
        covers(
            "ada.lovelace@example.com_x",
            "ada.lovelace@example.com",
            Detector::Email,
        );
        for (t, c) in [
            ("305693 09025904\n385200 00023237", "385200 00023237"),
            ("305693 09025904\n385200 00023237", "305693 09025904"),
            ("305693 09025904\n12345", "305693 09025904"),
            ("6759 000 000 013\n6759 000 000 013", "6759 000 000 013\n"),
            ("4222 2222 222 22 12/28", "4222 2222 222 22"),
        ] {
            covers(t, c.trim_end(), Detector::Card);
        }
        let two = "6759 000 000 013\n6759 000 000 013";
        let spans = detect(two);
        assert_eq!(spans.len(), 2, "{spans:?}");
    }

    /// Red-team round 8: other line breaks, `_` after an obfuscated
    /// address, more brackets.
    #[test]
    fn l8_other_line_breaks_and_trailing_underscores() {
        for brk in ["\r", "\u{2028}", "\u{85}"] {
            let t = format!("305693 09025904{brk}385200 00023237");
            covers(&t, "305693 09025904", Detector::Card);
            covers(&t, "385200 00023237", Detector::Card);
            let one = format!("305693 09025904{brk}12345");
            covers(&one, "305693 09025904", Detector::Card);
        }
        for t in [
            "ada@b\u{fc}cher[.]de",
            "ada[at]example[.]com",
            "ada@example dot com",
            "ada @ example . com",
            "ada@example%5B.%5Dcom",
        ] {
            covers(&format!("file {t}_x.pdf"), t, Detector::Email);
        }
        for (open, close) in [
            ("\u{300e}", "\u{300f}"),
            ("\u{ab}", "\u{bb}"),
            ("&lsqb;", "&rsqb;"),
        ] {
            let t = format!("ada@example{open}.{close}com");
            covers(&format!("mail {t} ok"), &t, Detector::Email);
        }
    }

    /// Red-team round 9: an address before a sentence, punctuation in an
    /// obfuscated local part, numbers wrapped over lines.
    #[test]
    fn l9_address_before_a_sentence_and_wrapped_numbers() {
        for (t, e) in [
            (
                "Please email ada at example dot com. Thanks",
                "ada at example dot com",
            ),
            ("ada at example.com. Thanks", "ada at example.com"),
            ("ada @ example . com. Bye", "ada @ example . com"),
            ("ada @ example.com. Bye", "ada @ example.com"),
            (
                "ada at example [dot] com. Thanks",
                "ada at example [dot] com",
            ),
            (
                "ada.lovelace'smith@example[.]com",
                "ada.lovelace'smith@example[.]com",
            ),
            ("o'brien[at]example[.]com", "o'brien[at]example[.]com"),
        ] {
            covers(t, e, Detector::Email);
        }
        // The sentence after it stays.
        let spans = detect("ada at example dot com. Thanks");
        assert!(
            spans
                .iter()
                .all(|s| s.end <= "ada at example dot com".len()),
            "{spans:?}"
        );
        covers("SSN: 078  05  1120 ok", "078  05  1120", Detector::UsSsn);
        covers(
            "tel 06  12  34  56  78 ok",
            "06  12  34  56  78",
            Detector::Phone,
        );
        // Round 10: numbers on separate lines or in separate columns stay
        // separate, each covered whole (a line break or a tab is not a
        // space inside one number).
        for (t, parts) in [
            (
                "0412 345 678\n06 12 34 56 78",
                ["0412 345 678", "06 12 34 56 78"],
            ),
            (
                "Ada\t078 05 1120\t06 12 34 56 78",
                ["078 05 1120", "06 12 34 56 78"],
            ),
            (
                "Ada\t025 81 6542\r\n020 7946 0958",
                ["025 81 6542", "020 7946 0958"],
            ),
        ] {
            for p in parts {
                covered_whole(t, p);
            }
        }
        covers(
            "+1 415 555 2671\n0033 6 12 34 56 78",
            "0033 6 12 34 56 78",
            Detector::Phone,
        );
        covers(
            "+49 30 1234567\n305693 09025904",
            "305693 09025904",
            Detector::Card,
        );
        check("meet at 10.30. See you", &[]);
        check("I work at acme.com. Thanks", &[]);
    }

    /// Red-team round 11: two spaces between two numbers, vertical tabs and
    /// form feeds as line breaks, a tab column before a short card.
    #[test]
    fn l11_double_spaces_vertical_tabs_and_columns() {
        for (t, parts) in [
            (
                "0412 345 678  06 12 34 56 78",
                ["0412 345 678", "06 12 34 56 78"],
            ),
            (
                "06 12 34 5678  01 23 45 67 89",
                ["06 12 34 5678", "01 23 45 67 89"],
            ),
            (
                "Ada Lovelace\u{b}020 7946 0958\u{b}London",
                ["020 7946 0958", "020 7946 0958"],
            ),
            (
                "Ada\u{c}078-05-1120\u{c}Paris",
                ["078-05-1120", "078-05-1120"],
            ),
            (
                "+49 30 1234567\t305693 09025904",
                ["+49 30 1234567", "305693 09025904"],
            ),
        ] {
            for p in parts {
                covered_whole(t, p);
            }
        }
        covers("Ada\u{b}203.0.113.45\u{b}x", "203.0.113.45", Detector::Ipv4);
    }

    #[test]
    fn l2_card_separators_groupings_scripts_and_glue() {
        for c in [
            "4111_1111_1111_1111",
            "4111,1111,1111,1111",
            "4111/1111/1111/1111",
            "4111  1111  1111  1111",
            "4111 - 1111 - 1111 - 1111",
            "4111\t1111\t1111\t1111",
            "4111\n1111\n1111\n1111",
            "4111\r\n1111\r\n1111\r\n1111",
            "4111\u{2013}1111\u{2013}1111\u{2013}1111",
            "4111*1111*1111*1111",
            "41 11 11 11 11 11 11 11",
            "411 111 111 111 1111",
            "4111\u{200b}1111\u{200b}1111\u{200b}1111",
            "41111111\u{200b}11111111",
            "\u{664}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}\u{661}",
            "\u{ff14}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}\u{ff11}",
            "\u{96a}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}\u{967}",
        ] {
            covers(&format!("card {c} ok"), c, Detector::Card);
        }
        for t in [
            "card4111111111111111",
            "x4111111111111111",
            "4111111111111111x",
            "4111111111111111.5",
        ] {
            covers(t, "4111111111111111", Detector::Card);
        }
        // Behind a decimal point too (round 3: `1.4111…` hid a card).
        check(
            "price 0.4111111111111111 or 0,4111111111111111",
            &[
                ("4111111111111111", Detector::Card),
                ("4111111111111111", Detector::Card),
            ],
        );
        let two = "cards 4111111111111111,5555555555554444";
        covers(two, "4111111111111111", Detector::Card);
        covers(two, "5555555555554444", Detector::Card);
    }

    #[test]
    fn l3_emails() {
        let pad = format!("ref:{}ada@example.com", "_".repeat(257));
        covers(&pad, "ada@example.com", Detector::Email);
        let pad = format!("{}-ada@example.com", "x".repeat(300));
        covers(&pad, "ada@example.com", Detector::Email);
        for (t, data) in [
            ("ada@example\u{200b}.com", "ada@example\u{200b}.com"),
            ("ada\u{200b}@example.com", "ada\u{200b}@example.com"),
            ("ada\u{ff20}example.com", "ada\u{ff20}example.com"),
            ("ada&#64;example.com", "ada&#64;example.com"),
            ("ada&#x40;example.com", "ada&#x40;example.com"),
            ("ada&commat;example.com", "ada&commat;example.com"),
            ("ada%40example%2Ecom", "ada%40example%2Ecom"),
            (
                "\"ada lovelace\"@example.com",
                "\"ada lovelace\"@example.com",
            ),
            ("To: <ada@localhost>", "ada@localhost"),
            ("ada [at] example [dot] com", "ada [at] example [dot] com"),
            ("ada (at) example (dot) com", "ada (at) example (dot) com"),
            ("ada at example dot com", "ada at example dot com"),
            (
                "ada.lovelace at example dot co dot uk",
                "ada.lovelace at example dot co dot uk",
            ),
        ] {
            covers(&format!("mail {t} now"), data, Detector::Email);
        }
        check("user@localhost", &[]);
        check("email at example dot com", &[]);
        check("we met at noon dot", &[]);
    }

    #[test]
    fn l4_phones() {
        for p in [
            "+44\u{200b}20\u{200b}7946\u{200b}0958",
            "+44_20_7946_0958",
            "+\u{664}\u{664}\u{662}\u{660}\u{667}\u{669}\u{664}\u{666}\u{660}\u{669}\u{665}\u{668}",
            "\u{ff0b}44 20 7946 0958",
            "&#43;44 20 7946 0958",
            "%2B44%2020%207946%200958",
            "+1 415 555 2671",
            "+44 20 7946 0958",
        ] {
            covers(&format!("call {p} now"), p, Detector::Phone);
        }
        covers("tel+442079460958", "+442079460958", Detector::Phone);
        covers("+1 415 555 2671x", "+1 415 555 2671", Detector::Phone);
        covers("+44 20 7946 0958 1234", "+44 20 7946 0958", Detector::Phone);
        covers("+44 20 7946 0958 0958", "+44 20 7946 0958", Detector::Phone);
        covers(
            "+44 20 7946 0958\u{200b}1234",
            "+44 20 7946 0958\u{200b}1234",
            Detector::Phone,
        );
        check(
            "room 12 +44 20 7946 0958",
            &[("+44 20 7946 0958", Detector::Phone)],
        );
        covers(
            "https://wa.me/442079460958",
            "442079460958",
            Detector::Phone,
        );
    }

    #[test]
    fn l5_ibans() {
        for i in [
            "DE89.3704.0044.0532.0130.00",
            "DE89  3704  0044  0532  0130  00",
            "DE 89 3704 0044 0532 0130 00",
            "DE89 370 400 440 532 013 000",
            "DE89\u{200b}3704\u{200b}0044\u{200b}0532\u{200b}0130\u{200b}00",
            "de89 3704 0044 0532 0130 00",
        ] {
            covers(&format!("iban {i} ok"), i, Detector::Iban);
        }
        covers(
            "ibanDE89370400440532013000",
            "DE89370400440532013000",
            Detector::Iban,
        );
        covers(
            "DE8937040044053201300012",
            "DE89370400440532013000",
            Detector::Iban,
        );
        covers(
            "DE89 3704 0044 0532 0130 0012 34",
            "DE89 3704 0044 0532 0130 00",
            Detector::Iban,
        );
        let two = "DE89370400440532013000DE89370400440532013000";
        covers(two, &two[..22], Detector::Iban);
        covers(two, &two[22..], Detector::Iban);
        check("DE89 3704 0044 0532 0130 01", &[]);
    }

    #[test]
    fn l6_ssns() {
        for (t, d) in [
            ("ssn 123.45.6789", "123.45.6789"),
            ("SSN: 123/45/6789", "123/45/6789"),
            ("ssn 123\u{2013}45\u{2013}6789", "123\u{2013}45\u{2013}6789"),
            ("s.s.n. 123456789", "123456789"),
        ] {
            covers(t, d, Detector::UsSsn);
        }
    }

    #[test]
    fn l7_ipv4_forms() {
        for (t, d) in [
            ("from 081.2.69.160 ok", "081.2.69.160"),
            ("from 81.002.069.160 ok", "81.002.069.160"),
            ("ip 1361069472", "1361069472"),
            ("addr: 1361069472", "1361069472"),
            ("from 0x51.0x2.0x45.0xa0 ok", "0x51.0x2.0x45.0xa0"),
            (
                "from \u{668}\u{661}.\u{662}.\u{666}\u{669}.\u{661}\u{666}\u{660} ok",
                "\u{668}\u{661}.\u{662}.\u{666}\u{669}.\u{661}\u{666}\u{660}",
            ),
        ] {
            covers(t, d, Detector::Ipv4);
        }
        check("ts 1361069472", &[]);
        check("due 12.11.2026 v1.2.3 01.02.03.04", &[]);
    }

    #[test]
    fn folding_never_panics_and_maps_to_boundaries() {
        for text in [
            "&#",
            "&#;",
            "&#x;",
            "&#99999999999;",
            "&#xD800;",
            "%",
            "%4",
            "%4\u{e9}",
            "&#64",
            "\u{200b}",
            "\u{200b}@\u{200b}",
            "a&#64;\u{200b}b.c\u{200b}",
            "\u{ff10}\u{ff10}%2B",
            "&commat",
            "&commat;&commat;",
            "\u{1d7ce}\u{1d7cf}",
        ] {
            for s in detect(text) {
                assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
                assert!(s.start < s.end && s.end <= text.len());
            }
        }
    }

    #[test]
    fn random_mixes_of_folded_forms_never_panic() {
        const PIECES: [&str; 32] = [
            "4111", "1111", " ", "-", ".", "_", ",", "/", "*", "\u{200b}", "\u{ad}", "\u{feff}",
            "\u{664}", "\u{ff11}", "\u{ff20}", "\u{2013}", "&#64;", "&#x4", "&#", "%40", "%2", "%",
            "@", "ada", "DE89", "+44", "(", ")", "\u{e9}", "ssn", " at ", " dot com",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(PIECES[(x % PIECES.len() as u64) as usize]);
            }
            let spans = detect(&text);
            let mut prev_end = 0;
            for s in &spans {
                assert!(
                    text.is_char_boundary(s.start) && text.is_char_boundary(s.end),
                    "{text:?}"
                );
                assert!(s.start < s.end && s.start >= prev_end, "{text:?} {spans:?}");
                prev_end = s.end;
            }
        }
    }
}
