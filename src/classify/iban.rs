//! IBANs: the ISO 13616 registry's lengths, mod-97, and the scanner that
//! finds them with separators anywhere.

#[allow(clippy::wildcard_imports)]
use super::*;

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
pub(super) fn iban_compact_valid(compact: &[u8]) -> bool {
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

/// IBAN length per country (ISO 13616 registry).
pub(super) const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
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
pub(super) fn scan_ibans(text: &str, cands: &mut Vec<Span>) {
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
