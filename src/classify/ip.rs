//! IP address helpers: dotted quads with any radix, IPv6 starts.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The octets of a dotted IPv4 address: decimal (leading zeros allowed) or
/// `0x` hexadecimal, each at most 255. Four zero-padded two-digit parts
/// (`01.02.03.04`) are a date or time, not an address.
pub(super) fn ipv4_octets(s: &str) -> Option<[u8; 4]> {
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
pub(super) fn ipv6_start(text: &str, start: usize, end: usize) -> Option<usize> {
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
