//! Decoding of event values. JSON is parsed into a flat *tape* of tokens that
//! point into the input bytes, so governance can copy kept values verbatim
//! (numbers keep their exact text, strings their escapes) and never builds a
//! tree of owned values. The tape is reused across events: no allocation per
//! event once warm.
//!
//! The parser is strict RFC 8259: UTF-8 only, no trailing commas, no
//! comments, no lone surrogates, nesting at most [`MAX_DEPTH`], and duplicate
//! object keys are refused (parsers disagree on which one wins, so a
//! duplicate is a way to smuggle a value past governance). It never panics
//! and runs in time linear in the input.

use std::borrow::Cow;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    True,
    False,
    Number,
    /// A string without escapes: its content is the raw bytes.
    Str,
    /// A string with escapes: decode before use.
    StrEsc,
    Object,
    Array,
}

/// One token. For strings `start..end` excludes the quotes; for everything
/// else it is the whole raw text. `next` is the index of the token after this
/// value's subtree. `leaves` counts the scalars below a container (an empty
/// container counts as one; a scalar is one), and `hollow` says a container
/// is empty or holds an empty container somewhere below: both are computed
/// once while parsing, so governance never re-walks a subtree to know them.
#[derive(Debug, Clone, Copy)]
pub struct Tok {
    pub kind: Kind,
    pub hollow: bool,
    pub start: u32,
    pub end: u32,
    pub next: u32,
    pub leaves: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not UTF-8 (at byte {0})")]
    Utf8(usize),
    #[error("{what} at byte {at}")]
    Syntax { what: &'static str, at: usize },
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("duplicate object key at byte {0}")]
    DuplicateKey(usize),
    #[error("value larger than 4 GiB")]
    TooLarge,
}

/// A parsed JSON document: the input and its tape.
#[derive(Debug, Default)]
pub struct Tape {
    pub toks: Vec<Tok>,
    stack: Vec<usize>,
}

impl Tape {
    /// Parses `src` into this tape (replacing what it held).
    ///
    /// # Errors
    /// Any deviation from RFC 8259, nesting deeper than [`MAX_DEPTH`], or a duplicate key.
    pub fn parse(&mut self, src: &[u8]) -> Result<(), JsonError> {
        if src.len() >= u32::MAX as usize {
            return Err(JsonError::TooLarge);
        }
        if let Err(e) = std::str::from_utf8(src) {
            return Err(JsonError::Utf8(e.valid_up_to()));
        }
        self.toks.clear();
        self.stack.clear();
        let mut p = Parser {
            src,
            pos: 0,
            tape: self,
        };
        p.ws();
        p.value()?;
        p.ws();
        if p.pos != src.len() {
            return Err(JsonError::Syntax {
                what: "trailing characters after the value",
                at: p.pos,
            });
        }
        Ok(())
    }

    /// The root token (index 0).
    pub fn root(&self) -> Option<&Tok> {
        self.toks.first()
    }

    /// Iterates an object's members as (key token index, value token index).
    pub fn members(&self, obj: usize) -> Members<'_> {
        Members {
            toks: &self.toks,
            at: obj + 1,
            end: self.toks[obj].next as usize,
        }
    }

    /// Iterates an array's element token indexes.
    pub fn elements(&self, arr: usize) -> Elements<'_> {
        Elements {
            toks: &self.toks,
            at: arr + 1,
            end: self.toks[arr].next as usize,
        }
    }
}

pub struct Members<'t> {
    toks: &'t [Tok],
    at: usize,
    end: usize,
}

impl Iterator for Members<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.at >= self.end {
            return None;
        }
        let k = self.at;
        let v = k + 1;
        self.at = self.toks[v].next as usize;
        Some((k, v))
    }
}

pub struct Elements<'t> {
    toks: &'t [Tok],
    at: usize,
    end: usize,
}

impl Iterator for Elements<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let v = self.at;
        self.at = self.toks[v].next as usize;
        Some(v)
    }
}

/// The raw bytes of a token (strings without quotes).
#[inline]
pub fn raw<'a>(src: &'a [u8], t: &Tok) -> &'a [u8] {
    &src[t.start as usize..t.end as usize]
}

/// The raw JSON text of a token (strings with their quotes).
#[inline]
pub fn raw_json<'a>(src: &'a [u8], t: &Tok) -> &'a [u8] {
    match t.kind {
        Kind::Str | Kind::StrEsc => &src[t.start as usize - 1..t.end as usize + 1],
        _ => &src[t.start as usize..t.end as usize],
    }
}

/// A string token's text, decoded if it has escapes.
pub fn string<'a>(src: &'a [u8], t: &Tok) -> Cow<'a, str> {
    let bytes = raw(src, t);
    // The whole input was validated as UTF-8 and tokens end on ASCII quotes.
    let s = std::str::from_utf8(bytes).unwrap_or_default();
    if t.kind == Kind::Str {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(unescape(s))
    }
}

/// Decodes JSON escapes of an already validated string body.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let hi = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // Validated: a low surrogate escape follows.
                    let _ = chars.next();
                    let _ = chars.next();
                    let hex2: String = chars.by_ref().take(4).collect();
                    let lo = u32::from_str_radix(&hex2, 16).unwrap_or(0xDC00);
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

struct Parser<'s, 't> {
    src: &'s [u8],
    pos: usize,
    tape: &'t mut Tape,
}

impl Parser<'_, '_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError::Syntax { what, at: self.pos }
    }

    fn push(&mut self, kind: Kind, start: usize, end: usize) -> usize {
        let i = self.tape.toks.len();
        self.tape.toks.push(Tok {
            kind,
            hollow: false,
            start: start as u32,
            end: end as u32,
            next: i as u32 + 1,
            leaves: 1,
        });
        i
    }

    /// Parses one value. Containers are handled with an explicit stack, so
    /// deep input cannot overflow the call stack.
    fn value(&mut self) -> Result<(), JsonError> {
        // Each open container: its token index; expecting a key after '{' or ','.
        loop {
            self.ws();
            let Some(&b) = self.src.get(self.pos) else {
                return Err(self.err("unexpected end of input"));
            };
            match b {
                b'{' | b'[' => {
                    if self.tape.stack.len() >= MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    let kind = if b == b'{' { Kind::Object } else { Kind::Array };
                    let i = self.push(kind, self.pos, self.pos);
                    self.tape.stack.push(i);
                    self.pos += 1;
                    self.ws();
                    let close = if b == b'{' { b'}' } else { b']' };
                    if self.src.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        self.close()?;
                    } else if b == b'{' {
                        self.key()?;
                        continue;
                    } else {
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true", Kind::True)?,
                b'f' => self.literal(b"false", Kind::False)?,
                b'n' => self.literal(b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(self.err("expected a value")),
            }
            // After a value: close containers or continue with the next member.
            loop {
                let Some(&top) = self.tape.stack.last() else {
                    return Ok(());
                };
                self.ws();
                let is_obj = self.tape.toks[top].kind == Kind::Object;
                match self.src.get(self.pos) {
                    Some(b',') => {
                        self.pos += 1;
                        if is_obj {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if is_obj => {
                        self.pos += 1;
                        self.close()?;
                    }
                    Some(b']') if !is_obj => {
                        self.pos += 1;
                        self.close()?;
                    }
                    _ => {
                        return Err(self.err(if is_obj {
                            "expected ',' or '}'"
                        } else {
                            "expected ',' or ']'"
                        }))
                    }
                }
            }
        }
    }

    /// Closes the innermost container: sets its end and `next`, checks keys.
    fn close(&mut self) -> Result<(), JsonError> {
        let i = self.tape.stack.pop().unwrap_or(0);
        let n = self.tape.toks.len() as u32;
        let t = &mut self.tape.toks[i];
        t.end = self.pos as u32;
        t.next = n;
        let object = t.kind == Kind::Object;
        // Children are closed already: sum what they know (linear overall).
        let (mut leaves, mut hollow, mut any) = (0u32, false, false);
        let mut fold = |c: &Tok| {
            leaves = leaves.saturating_add(c.leaves);
            hollow |= c.hollow;
            any = true;
        };
        if object {
            self.tape
                .members(i)
                .for_each(|(_, v)| fold(&self.tape.toks[v]));
        } else {
            self.tape.elements(i).for_each(|v| fold(&self.tape.toks[v]));
        }
        let t = &mut self.tape.toks[i];
        t.leaves = leaves.max(1);
        t.hollow = hollow || !any;
        if object {
            self.check_duplicates(i)?;
        }
        Ok(())
    }

    fn check_duplicates(&self, obj: usize) -> Result<(), JsonError> {
        let same = |a: &Tok, b: &Tok| {
            if a.kind == Kind::Str && b.kind == Kind::Str {
                raw(self.src, a) == raw(self.src, b)
            } else {
                string(self.src, a) == string(self.src, b)
            }
        };
        let toks = &self.tape.toks;
        let n = self.tape.members(obj).count();
        if n <= 32 {
            for (i, (ka, _)) in self.tape.members(obj).enumerate() {
                let a = &toks[ka];
                if self
                    .tape
                    .members(obj)
                    .take(i)
                    .any(|(kb, _)| same(a, &toks[kb]))
                {
                    return Err(JsonError::DuplicateKey(a.start as usize));
                }
            }
        } else {
            let mut seen = std::collections::HashSet::with_capacity(n);
            for a in self.tape.members(obj).map(|(k, _)| &toks[k]) {
                if !seen.insert(string(self.src, a)) {
                    return Err(JsonError::DuplicateKey(a.start as usize));
                }
            }
        }
        Ok(())
    }

    fn key(&mut self) -> Result<(), JsonError> {
        if self.src.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string key"));
        }
        self.string()?;
        self.ws();
        if self.src.get(self.pos) != Some(&b':') {
            return Err(self.err("expected ':'"));
        }
        self.pos += 1;
        Ok(())
    }

    fn string(&mut self) -> Result<(), JsonError> {
        let start = self.pos + 1;
        let mut i = start;
        let mut esc = false;
        let src = self.src;
        loop {
            // Jump to the next quote or backslash; control characters are
            // checked on the skipped run.
            let Some(off) = memchr::memchr2(b'"', b'\\', &src[i..]) else {
                self.pos = src.len();
                return Err(self.err("unterminated string"));
            };
            if let Some(c) = src[i..i + off].iter().position(|&b| b < 0x20) {
                return Err(JsonError::Syntax {
                    what: "control character in string",
                    at: i + c,
                });
            }
            i += off;
            let b = src[i];
            match b {
                b'"' => break,
                b'\\' => {
                    esc = true;
                    match src.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let cp = hex4(src, i + 2).ok_or(JsonError::Syntax {
                                what: "bad \\u escape",
                                at: i,
                            })?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&cp) {
                                let lo = (src.get(i) == Some(&b'\\')
                                    && src.get(i + 1) == Some(&b'u'))
                                .then(|| hex4(src, i + 2))
                                .flatten()
                                .filter(|lo| (0xDC00..0xE000).contains(lo));
                                if lo.is_none() {
                                    return Err(JsonError::Syntax {
                                        what: "lone surrogate in \\u escape",
                                        at: i,
                                    });
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(JsonError::Syntax {
                                    what: "lone surrogate in \\u escape",
                                    at: i,
                                });
                            }
                        }
                        _ => {
                            return Err(JsonError::Syntax {
                                what: "bad escape",
                                at: i,
                            })
                        }
                    }
                }
                0..=0x1F => {
                    return Err(JsonError::Syntax {
                        what: "control character in string",
                        at: i,
                    })
                }
                _ => i += 1,
            }
        }
        self.push(if esc { Kind::StrEsc } else { Kind::Str }, start, i);
        self.pos = i + 1;
        Ok(())
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<(), JsonError> {
        if self.src[self.pos..].starts_with(word) {
            self.push(kind, self.pos, self.pos + word.len());
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let src = self.src;
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while src.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > s
        };
        if src.get(i) == Some(&b'-') {
            i += 1;
        }
        match src.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => {
                return Err(JsonError::Syntax {
                    what: "bad number",
                    at: i,
                })
            }
        }
        if src.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err(JsonError::Syntax {
                    what: "bad number",
                    at: i,
                });
            }
        }
        if let Some(b'e' | b'E') = src.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = src.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(JsonError::Syntax {
                    what: "bad number",
                    at: i,
                });
            }
        }
        self.push(Kind::Number, start, i);
        self.pos = i;
        Ok(())
    }
}

fn hex4(src: &[u8], at: usize) -> Option<u32> {
    let h = src.get(at..at + 4)?;
    let s = std::str::from_utf8(h).ok()?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests;
