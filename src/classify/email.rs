//! E-mail helpers: validity of a match, obfuscation hints, top-level domains,
//! stop words of the spelled-out form.

#[allow(clippy::wildcard_imports)]
use super::*;

/// An e-mail match stands on its own (the next character does not continue
/// a word, the domain is at most 255 characters): the start of the address,
/// the longest valid local part of at most 64 characters ending at the `@`
/// (padding before an address does not hide it).
pub(super) fn email_valid(text: &str, start: usize, end: usize) -> Option<usize> {
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
pub(super) fn obfuscation_hint(bytes: &[u8]) -> bool {
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
pub(super) fn trim_to_tld(t: &str, min: usize) -> Option<usize> {
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
pub(super) fn bracketed_at(t: &str) -> bool {
    let b = t.as_bytes();
    memchr::memmem::find_iter(b, b"at").any(|i| {
        let before = b[..i].iter().rev().find(|c| !c.is_ascii_whitespace());
        let after = b[i + 2..].iter().find(|c| !c.is_ascii_whitespace());
        matches!(before, Some(b'[' | b'(' | b'{' | b'<'))
            && matches!(after, Some(b']' | b')' | b'}' | b'>'))
    })
}

/// Top-level domains common enough to accept `ada at example dot com`.
pub(super) fn plausible_tld(tld: &str) -> bool {
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
pub(super) fn is_stop_word(local: &str) -> bool {
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
