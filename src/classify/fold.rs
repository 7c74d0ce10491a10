//! The folding pre-pass against obfuscation (invisible characters, other
//! scripts' digits, entities, escapes), with its map back to the original.

/// A folded copy of a text and, for every byte of it, the byte range of the
/// original character it comes from.
pub(super) struct Folded {
    pub(super) text: String,
    /// `from[i]`: start of the original range of folded byte `i`.
    pub(super) from: Vec<u32>,
    /// `to[i]`: end of the original range of folded byte `i`.
    pub(super) to: Vec<u32>,
}

/// Characters that render as nothing and may hide inside data: format
/// characters (Unicode Cf), C1 controls, variation selectors, tag
/// characters, fillers and combining marks (an accent or a keycap on a
/// digit is still that digit).
pub(super) fn is_invisible(c: char) -> bool {
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
pub(super) fn is_ascii_hidden(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f
}

/// Zeros of the Unicode decimal digit (Nd) blocks folded to ASCII digits.
pub(super) const DIGIT_ZEROS: [u32; 26] = [
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
pub(super) fn decode_escape(s: &str) -> Option<(char, usize)> {
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
    pub(super) fn new(text: &str) -> Option<Folded> {
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
    pub(super) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        (self.from[start] as usize, self.to[end - 1] as usize)
    }
}
