//! The value transforms: redact, mask, pseudonymize, generalize.
//!
//! Pure functions of (action, value). A value that does not fit its
//! transform is redacted, never passed through. `null` stays `null` under every
//! action (absence of a value reveals nothing and has no pseudonym).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use hmac::{Hmac, Mac};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Number, Value};
use sha2::Sha256;
use unicode_segmentation::UnicodeSegmentation;

/// How a `generalize` action coarsens a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Generalize {
    Date(DateUnit),
    Round(u32),
    /// Bucket width, in exact decimal arithmetic.
    Bucket(rust_decimal::Decimal),
    Prefix(usize),
    /// Prefix lengths per address family (IPv4 below 32, IPv6 below 128).
    Network {
        v4: u8,
        v6: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateUnit {
    Year,
    Month,
    Day,
}

pub const REDACTED: &str = "[REDACTED]";

type HmacSha256 = Hmac<Sha256>;

/// A compiled action, ready to apply: keys are already turned into MAC state.
#[derive(Clone)]
pub enum Op {
    Drop,
    Redact,
    Pseudonymize(Arc<HmacSha256>),
    Mask {
        keep_first: usize,
        keep_last: usize,
        ch: char,
    },
    Generalize(Generalize),
    /// Encryption under the subject's data key, wrapped by the KEK with this
    /// name. Needs the event's context: the engine's walk does it
    /// ([`crate::crypto`]); the context-free functions here redact.
    Encrypt(Arc<str>),
    Keep,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Drop => f.write_str("Drop"),
            Op::Redact => f.write_str("Redact"),
            Op::Pseudonymize(_) => f.write_str("Pseudonymize(<key>)"),
            Op::Mask {
                keep_first,
                keep_last,
                ch,
            } => write!(f, "Mask({keep_first}, {keep_last}, {ch:?})"),
            Op::Generalize(g) => write!(f, "Generalize({g:?})"),
            Op::Encrypt(kek) => write!(f, "Encrypt({kek})"),
            Op::Keep => f.write_str("Keep"),
        }
    }
}

impl Op {
    /// Pseudonymization under `key` (`None` only if the MAC refuses the key).
    pub fn pseudonymize(key: &[u8]) -> Option<Op> {
        Some(Op::Pseudonymize(Arc::new(
            HmacSha256::new_from_slice(key).ok()?,
        )))
    }
}

/// `"ps_"` + the first 32 hex characters of HMAC-SHA256(key, bytes).
pub fn pseudonym(mac: &HmacSha256, bytes: &[u8]) -> String {
    let mut m = mac.clone();
    m.update(bytes);
    let tag = m.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(35);
    out.push_str("ps_");
    for b in &tag[..16] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Pseudonymizes with a raw key (for tests and tools).
pub fn pseudonym_with_key(key: &[u8], bytes: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    pseudonym(&mac, bytes)
}

fn redact(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(REDACTED.to_string()),
        _ => Value::Null,
    }
}

/// Applies an action to a scalar value (strings, numbers, booleans, null).
/// `None` means the field is dropped.
pub fn apply<'v>(op: &Op, v: &'v Value) -> Option<Cow<'v, Value>> {
    if v.is_null() {
        return match op {
            Op::Drop => None,
            _ => Some(Cow::Owned(Value::Null)),
        };
    }
    Some(match op {
        Op::Drop => return None,
        Op::Keep => Cow::Borrowed(v),
        // Without the event's context (the walk's), encryption redacts.
        Op::Redact | Op::Encrypt(_) => Cow::Owned(redact(v)),
        Op::Pseudonymize(mac) => Cow::Owned(Value::String(match v {
            Value::String(s) => pseudonym(mac, s.as_bytes()),
            other => pseudonym(mac, other.to_string().as_bytes()),
        })),
        Op::Mask {
            keep_first,
            keep_last,
            ch,
        } => match v {
            Value::String(s) => Cow::Owned(Value::String(mask(s, *keep_first, *keep_last, *ch))),
            other => Cow::Owned(redact(other)),
        },
        Op::Generalize(g) => Cow::Owned(generalize(g, v).unwrap_or_else(|| redact(v))),
    })
}

/// True when every byte of `s` is a grapheme cluster of its own: ASCII
/// without a CR LF pair (the only ASCII sequence that forms one cluster).
fn one_byte_graphemes(s: &str) -> bool {
    s.is_ascii() && !s.as_bytes().windows(2).any(|w| w == b"\r\n")
}

/// Keeps the first and last characters (user-perceived characters: grapheme
/// clusters, so `e` + combining accent or an emoji sequence is one), replaces
/// the rest. A string no longer than what would be kept is masked whole
/// (keeping it would reveal it all).
pub fn mask(s: &str, keep_first: usize, keep_last: usize, ch: char) -> String {
    if one_byte_graphemes(s) {
        // Every byte is a grapheme cluster: no segmentation needed.
        let n = s.len();
        if n <= keep_first + keep_last {
            return std::iter::repeat_n(ch, n).collect();
        }
        let mut out = String::with_capacity(n);
        out.push_str(&s[..keep_first]);
        out.extend(std::iter::repeat_n(ch, n - keep_first - keep_last));
        out.push_str(&s[n - keep_last..]);
        return out;
    }
    let n = s.graphemes(true).count();
    if n <= keep_first + keep_last {
        return std::iter::repeat_n(ch, n).collect();
    }
    let mut out = String::with_capacity(s.len());
    for (i, g) in s.graphemes(true).enumerate() {
        if i < keep_first || i >= n - keep_last {
            out.push_str(g);
        } else {
            out.push(ch);
        }
    }
    out
}

/// A generalized value, or `None` when the value does not fit.
pub fn generalize(g: &Generalize, v: &Value) -> Option<Value> {
    match g {
        Generalize::Date(unit) => {
            let date = match v {
                Value::String(s) => parse_date(s)?,
                Value::Number(n) => {
                    let ms = n.as_i64().or_else(|| {
                        n.as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                            .map(|f| f as i64)
                    })?;
                    DateTime::from_timestamp_millis(ms)?.date_naive()
                }
                _ => return None,
            };
            Some(Value::String(match unit {
                DateUnit::Year => format!("{:04}", date.year()),
                DateUnit::Month => format!("{:04}-{:02}", date.year(), date.month()),
                DateUnit::Day => {
                    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
                }
            }))
        }
        Generalize::Round(d) => {
            let n = v.as_number()?;
            if n.is_i64() || n.is_u64() {
                return Some(v.clone());
            }
            match decimal(n) {
                Some(x) => decimal_number(
                    x.round_dp_with_strategy(*d, RoundingStrategy::MidpointAwayFromZero),
                ),
                None => {
                    let x = n.as_f64()?;
                    let f = 10f64.powi(*d as i32);
                    number((x * f).round() / f, *d == 0)
                }
            }
        }
        Generalize::Bucket(w) => {
            // Exact decimal arithmetic on the number's text: 0.3 in buckets
            // of 0.1 is 0.3, not 0.2 as in binary floating point.
            let x = decimal(v.as_number()?)?;
            let q = x.checked_div(*w)?.floor();
            decimal_number(q.checked_mul(*w)?)
        }
        Generalize::Prefix(len) => match v {
            Value::String(s) if one_byte_graphemes(s) => {
                Some(Value::String(s[..(*len).min(s.len())].to_string()))
            }
            Value::String(s) => Some(Value::String(s.graphemes(true).take(*len).collect())),
            _ => None,
        },
        Generalize::Network { v4, v6 } => match v {
            Value::String(s) => network(s, *v4, *v6).map(Value::String),
            _ => None,
        },
    }
}

/// A JSON number as an exact decimal, when it has at most 28 significant digits.
fn decimal(n: &Number) -> Option<Decimal> {
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text).ok()
    } else {
        Decimal::from_str_exact(&text).ok()
    }
}

/// A decimal as a JSON number, written without trailing zeros.
fn decimal_number(d: Decimal) -> Option<Value> {
    let text = d.normalize().to_string();
    serde_json::from_str::<Number>(&text)
        .ok()
        .map(Value::Number)
}

fn number(r: f64, integral: bool) -> Option<Value> {
    if !r.is_finite() {
        return None;
    }
    if (integral || r.fract() == 0.0) && r.abs() < 9.0e15 {
        return Some(Value::Number(Number::from(r as i64)));
    }
    Number::from_f64(r).map(Value::Number)
}

/// The calendar date of an RFC 3339 date-time (as written, in its own offset),
/// a date-time without offset, or a full date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // Fast path for the common `YYYY-MM-DD` (birth dates).
    if s.len() == 10 {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |a, d| {
                d.is_ascii_digit().then(|| a * 10 + u32::from(d - b'0'))
            })
        };
        if b[4] == b'-' && b[7] == b'-' {
            return NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?);
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.naive_local().date());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(dt.date());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The network address of `ip` with a prefix of `v4` or `v6` bits (capped
/// below the address size, so an address is never kept whole).
pub fn network(ip: &str, v4: u8, v6: u8) -> Option<String> {
    match ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let b = u32::from(v4.min(31));
            let m = if b == 0 { 0 } else { u32::MAX << (32 - b) };
            Some(std::net::Ipv4Addr::from(u32::from(a) & m).to_string())
        }
        IpAddr::V6(a) => {
            let b = u32::from(v6.min(127));
            let m = if b == 0 { 0 } else { u128::MAX << (128 - b) };
            Some(std::net::Ipv6Addr::from(u128::from(a) & m).to_string())
        }
    }
}

/// Transforms a span found inside scanned text, in place. Drop and redact
/// become `[REDACTED:<class>]`; a span that does not fit its generalization too.
pub fn apply_span(op: &Op, span: &str, class: &str, out: &mut String) {
    let marker = |out: &mut String| {
        out.push_str("[REDACTED:");
        out.push_str(class);
        out.push(']');
    };
    match op {
        // The walk encrypts spans itself; without its context: redacted.
        Op::Drop | Op::Redact | Op::Encrypt(_) => marker(out),
        Op::Keep => out.push_str(span),
        Op::Pseudonymize(mac) => out.push_str(&pseudonym(mac, span.as_bytes())),
        Op::Mask {
            keep_first,
            keep_last,
            ch,
        } => out.push_str(&mask(span, *keep_first, *keep_last, *ch)),
        Op::Generalize(g) => match generalize(g, &Value::String(span.to_string())) {
            Some(Value::String(s)) => out.push_str(&s),
            _ => marker(out),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(op: Op, input: Value, expected: Option<Value>) {
        assert_eq!(
            apply(&op, &input).map(Cow::into_owned),
            expected,
            "{op:?} on {input}"
        );
    }

    fn g(g: Generalize) -> Op {
        Op::Generalize(g)
    }

    #[test]
    fn drop_redact_keep() {
        check(Op::Drop, json!("x"), None);
        check(Op::Redact, json!("secret"), Some(json!("[REDACTED]")));
        check(Op::Redact, json!(42), Some(Value::Null));
        check(Op::Redact, json!(true), Some(Value::Null));
        check(Op::Keep, json!(1.5), Some(json!(1.5)));
        check(Op::Keep, Value::Null, Some(Value::Null));
    }

    #[test]
    fn pseudonymize_matches_spec_formula() {
        let key = b"k1";
        let mac = Arc::new(HmacSha256::new_from_slice(key).unwrap());
        let op = Op::Pseudonymize(mac);
        // Independent computation of the formula.
        let mut m = HmacSha256::new_from_slice(key).unwrap();
        m.update(b"c-1");
        let expect = format!("ps_{}", &hex::encode(m.finalize().into_bytes())[..32]);
        check(op.clone(), json!("c-1"), Some(json!(expect)));
        // Non-strings: their JSON text.
        check(
            op.clone(),
            json!(42),
            Some(json!(pseudonym_with_key(key, b"42"))),
        );
        check(
            op,
            json!(true),
            Some(json!(pseudonym_with_key(key, b"true"))),
        );
    }

    proptest::proptest! {
        /// The byte fast path of mask and prefix is the grapheme path.
        #[test]
        fn ascii_fast_paths_agree_with_grapheme_segmentation(
            s in "[ -~\r\n\t]{0,24}",
            kf in 0usize..6,
            kl in 0usize..6,
        ) {
            let n = s.graphemes(true).count();
            let slow: String = if n <= kf + kl {
                std::iter::repeat_n('*', n).collect()
            } else {
                s.graphemes(true)
                    .enumerate()
                    .map(|(i, g)| if i < kf || i >= n - kl { g.to_string() } else { "*".into() })
                    .collect()
            };
            proptest::prop_assert_eq!(mask(&s, kf, kl, '*'), slow);
            let prefix: String = s.graphemes(true).take(kf).collect();
            proptest::prop_assert_eq!(
                generalize(&Generalize::Prefix(kf), &Value::String(s.clone())),
                Some(Value::String(prefix))
            );
        }
    }

    #[test]
    fn masking() {
        let m = |kf, kl| Op::Mask {
            keep_first: kf,
            keep_last: kl,
            ch: '*',
        };
        check(
            m(0, 4),
            json!("4111111111111111"),
            Some(json!("************1111")),
        );
        check(m(1, 0), json!("Jane"), Some(json!("J***")));
        // CR LF is one character (grapheme cluster), ASCII or not.
        assert_eq!(mask("ab\r\ncd", 1, 1, '*'), "a***d");
        check(m(0, 4), json!("123"), Some(json!("***")));
        check(m(0, 4), json!(1234), Some(Value::Null));
        check(
            Op::Mask {
                keep_first: 1,
                keep_last: 1,
                ch: '#',
            },
            json!("Zoë!"),
            Some(json!("Z##!")),
        );
        // User-perceived characters: a combining accent and an emoji
        // sequence are one character each, never split.
        check(m(3, 0), json!("Jose\u{301}ph"), Some(json!("Jos***")));
        check(m(0, 1), json!("Jose\u{301}"), Some(json!("***e\u{301}")));
        check(
            m(0, 1),
            json!("ab\u{1F469}\u{200D}\u{1F4BB}"),
            Some(json!("**\u{1F469}\u{200D}\u{1F4BB}")),
        );
    }

    #[test]
    fn generalize_dates() {
        let year = g(Generalize::Date(DateUnit::Year));
        let month = g(Generalize::Date(DateUnit::Month));
        let day = g(Generalize::Date(DateUnit::Day));
        check(year.clone(), json!("1987-06-21"), Some(json!("1987")));
        check(
            month.clone(),
            json!("1987-06-21T10:00:00Z"),
            Some(json!("1987-06")),
        );
        check(
            day.clone(),
            json!("1987-06-21T23:30:00-05:00"),
            Some(json!("1987-06-21")),
        );
        check(day, json!(551_232_000_000i64), Some(json!("1987-06-21")));
        check(year.clone(), json!("not a date"), Some(json!("[REDACTED]")));
        check(year, json!(true), Some(Value::Null));
    }

    #[test]
    fn generalize_numbers() {
        check(
            g(Generalize::Round(1)),
            json!(52.5200066),
            Some(json!(52.5)),
        );
        check(g(Generalize::Round(2)), json!(-0.126), Some(json!(-0.13)));
        check(g(Generalize::Round(0)), json!(2.5), Some(json!(3)));
        check(g(Generalize::Round(1)), json!(42), Some(json!(42)));
        let b = |w: &str| g(Generalize::Bucket(Decimal::from_str_exact(w).unwrap()));
        check(b("10"), json!(37), Some(json!(30)));
        check(b("10"), json!(-3), Some(json!(-10)));
        check(b("1000"), json!(52345.67), Some(json!(52000)));
        check(b("0.5"), json!(1.7), Some(json!(1.5)));
        // Exact decimals: binary floating point would give 0.2 and 0.7.
        check(b("0.1"), json!(0.3), Some(json!(0.3)));
        check(b("0.1"), json!(0.7), Some(json!(0.7)));
        check(
            b("0.1"),
            serde_json::from_str("3e-1").unwrap(),
            Some(json!(0.3)),
        );
        check(g(Generalize::Round(1)), json!(0.25), Some(json!(0.3)));
        check(
            g(Generalize::Round(1)),
            json!("52.5"),
            Some(json!("[REDACTED]")),
        );
    }

    #[test]
    fn generalize_strings() {
        check(g(Generalize::Prefix(3)), json!("10115"), Some(json!("101")));
        check(g(Generalize::Prefix(3)), json!(10115), Some(Value::Null));
        let net = |v4, v6| g(Generalize::Network { v4, v6 });
        check(net(24, 24), json!("10.1.2.3"), Some(json!("10.1.2.0")));
        check(net(16, 16), json!("10.1.2.3"), Some(json!("10.1.0.0")));
        check(
            net(24, 48),
            json!("2001:db8:abcd:12::1"),
            Some(json!("2001:db8:abcd::")),
        );
        check(net(24, 48), json!("10.1.2.3"), Some(json!("10.1.2.0")));
        // A prefix never keeps an address whole.
        check(net(32, 128), json!("10.1.2.3"), Some(json!("10.1.2.2")));
        check(net(24, 24), json!("nope"), Some(json!("[REDACTED]")));
    }

    #[test]
    fn spans() {
        let mut out = String::new();
        apply_span(&Op::Drop, "a@b.co", "pii.contact.email", &mut out);
        assert_eq!(out, "[REDACTED:pii.contact.email]");
        out.clear();
        apply_span(
            &Op::Mask {
                keep_first: 0,
                keep_last: 4,
                ch: '*',
            },
            "4111 1111 1111 1111",
            "pii.financial.card",
            &mut out,
        );
        assert_eq!(out, "***************1111");
        out.clear();
        apply_span(
            &Op::Generalize(Generalize::Round(1)),
            "4111",
            "pii.financial.card",
            &mut out,
        );
        assert_eq!(out, "[REDACTED:pii.financial.card]");
    }
}
