//! Check digits and issuer prefixes: Luhn, card IIN ranges, SSN parts.

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

pub(super) fn luhn_digits(ds: &[u8]) -> bool {
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

/// Does the number's issuer prefix fit its length (Visa 13/16/19, Amex 15, …)?
pub(super) fn iin_fits(ds: &[u8]) -> bool {
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

pub(super) fn ssn_parts_valid(ds: &[u8]) -> bool {
    ds.len() == 9
        && ds[..3] != [0, 0, 0]
        && ds[..3] != [6, 6, 6]
        && ds[0] != 9
        && ds[3..5] != [0, 0]
        && ds[5..] != [0, 0, 0, 0]
}
