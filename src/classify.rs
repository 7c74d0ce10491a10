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
//!
//! Files: this one holds the reference above, the types, and `detect_raw`,
//! the one pass that runs every detector over a text (over 600 lines
//! because the reference is the detectors' contract and belongs with the
//! code); `fold` the pre-pass, `cards` the card backstop, `numbers` phones
//! and SSNs, `iban`, `email`, `ip` their helpers, `validate` check digits,
//! `tests` the regression tests of every red-team round.
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

mod cards;
mod email;
mod fold;
mod iban;
mod ip;
mod numbers;
mod validate;

use self::cards::*;
use self::email::*;
pub(crate) use self::fold::fold_char;
use self::fold::*;
pub use self::iban::iban_valid;
use self::iban::*;
use self::ip::*;
use self::numbers::*;
pub use self::validate::luhn_valid;
use self::validate::*;

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

/// Finds every span of personal data in `text`, sorted by position, never overlapping.
pub fn detect(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    detect_into(text, &mut out);
    out
}

/// Like [`detect`], reusing `out`'s allocation.
pub fn detect_into(text: &str, out: &mut Vec<Span>) {
    out.clear();
    match folded(text) {
        Some(folded) => {
            detect_raw(&folded.text, out);
            for s in out.iter_mut() {
                (s.start, s.end) = folded.original(s.start, s.end);
            }
        }
        None => detect_raw(text, out),
    }
}

/// The detectors the guard of kept values acts on: those with checksums or
/// strict rules, which ordinary values do not set off.
pub const GUARDED: [Detector; 3] = [Detector::Card, Detector::Iban, Detector::UsSsn];

impl Span {
    /// Whether a guarded detector ([`GUARDED`]) found this span (alone or
    /// merged with others).
    pub fn is_guarded(&self) -> bool {
        self.detectors.iter().any(|d| GUARDED.contains(&d))
    }
}

/// The spans of [`detect_into`] that are guarded ([`Span::is_guarded`]),
/// found faster: the guarded detectors run first, on their own, and only
/// when one of them finds something does the full detection run (a guarded
/// span takes in whatever other finding it overlaps). They search exactly
/// as they do within the full detection, so when they find nothing, the
/// full detection has no guarded span either.
pub fn detect_guarded_into(text: &str, out: &mut Vec<Span>) {
    out.clear();
    let found = match folded(text) {
        Some(folded) => guarded_raw(&folded.text),
        None => guarded_raw(text),
    };
    if found {
        detect_into(text, out);
        out.retain(Span::is_guarded);
    }
}

/// `text` folded for the detectors, or `None` when it is scanned as it is
/// (all-ASCII text without escapes or hidden characters).
fn folded(text: &str) -> Option<Folded> {
    let bytes = text.as_bytes();
    let needs_fold = !text.is_ascii()
        || memchr::memchr3(b'&', b'%', b'\\', bytes).is_some()
        || bytes.iter().any(|&b| is_ascii_hidden(b));
    if needs_fold {
        Folded::new(text)
    } else {
        None
    }
}

/// Whether a guarded detector finds anything in `text` (with the same
/// preconditions as in [`detect_raw`]).
fn guarded_raw(text: &str) -> bool {
    let f = Features::of(text.as_bytes());
    let mut cands = Vec::new();
    if f.ndigits >= 12 {
        scan_cards(text, &mut cands);
        if !cands.is_empty() {
            return true;
        }
    }
    // No card: the runs of digits are cut by none (as in `detect_raw`).
    if f.ndigits >= 9 {
        scan_numbers(text, &[], Wanted::Ssn, &mut cands);
    }
    if cands.is_empty() && f.iban_start && text.len() >= 15 {
        scan_ibans(text, &mut cands);
    }
    !cands.is_empty()
}

/// What one pass over the bytes tells the detectors (which of them can match).
struct Features {
    ndigits: usize,
    at: bool,
    colon: bool,
    pct: bool,
    /// `digit.digit` occurrences (an IPv4 address has three).
    dotted: usize,
    /// A letter pair followed by two digits (an IBAN's start).
    iban_start: bool,
    /// The longest run of digits (an address written as one integer has 8-10).
    longest_run: usize,
}

impl Features {
    fn of(bytes: &[u8]) -> Features {
        let (mut ndigits, mut at, mut colon, mut pct) = (0usize, false, false, false);
        let (mut dotted, mut iban_start) = (0usize, false);
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
                    if (p1.is_ascii_digit()
                        || p1.is_ascii_whitespace()
                        || p1.is_ascii_punctuation())
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
        Features {
            ndigits,
            at,
            colon,
            pct,
            dotted,
            iban_start,
            longest_run,
        }
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
    let Features {
        ndigits,
        at,
        colon,
        pct,
        dotted,
        iban_start,
        longest_run,
    } = Features::of(bytes);
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
        let mut from = 0;
        while let Some(m) = p.email.find_at(text, from) {
            let (start, mut end) = (m.start(), m.end());
            // Glued addresses (`a@b.coc@d.com`, `ada@example.comada@x.io`):
            // the next one starts inside this one's domain. One span covers
            // the whole run (fail closed: no part of either is left).
            let mut glued = false;
            while text[end..].starts_with('@') {
                glued = true;
                let last_at = start + text[start..end].rfind('@').unwrap_or(0) + 1;
                match p.email.find_at(text, last_at) {
                    Some(n) if n.start() <= end && n.end() > end => end = n.end(),
                    _ => break,
                }
            }
            if let Some(s) = email_valid(text, start, end) {
                cands.push(Span::new(s, end, Detector::Email));
            } else if glued {
                // Still followed by an `@` or a word: the run is taken whole.
                let tail = text[end..]
                    .find(|c: char| {
                        c.is_whitespace()
                            || matches!(
                                c,
                                ',' | ';' | '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']'
                            )
                    })
                    .map_or(text.len(), |i| end + i);
                cands.push(Span::new(start, tail, Detector::Email));
                end = tail;
            }
            from = end;
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
        scan_numbers(
            text,
            &cards,
            if ndigits >= 9 {
                Wanted::PhonesAndSsn
            } else {
                Wanted::Phones
            },
            &mut cands,
        );
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
mod tests;
