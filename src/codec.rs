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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Address and length of the text the tape was made of, once whole.
    origin: Option<(usize, usize)>,
    /// A builder could not follow the text written (it never becomes whole).
    broken: bool,
}

impl Tape {
    /// Parses `src` into this tape (replacing what it held).
    ///
    /// # Errors
    /// Any deviation from RFC 8259, nesting deeper than [`MAX_DEPTH`], or a duplicate key.
    pub fn parse(&mut self, src: &[u8]) -> Result<(), JsonError> {
        self.begin();
        if let Err(e) = std::str::from_utf8(src) {
            return Err(JsonError::Utf8(e.valid_up_to()));
        }
        self.parse_checked(src, true)
    }

    /// Parses JSON text custos wrote itself from a governed document (a
    /// purpose's output): UTF-8 by construction, and its objects hold the
    /// members of objects that were checked for duplicates when read, so
    /// neither is checked again. Everything else is checked as by [`parse`].
    ///
    /// # Errors
    /// As [`parse`] (a bug in the writer: the caller dead-letters the record).
    ///
    /// [`parse`]: Tape::parse
    pub fn parse_written(&mut self, src: &[u8]) -> Result<(), JsonError> {
        self.parse_checked(src, false)
    }

    fn parse_checked(&mut self, src: &[u8], check_keys: bool) -> Result<(), JsonError> {
        if src.len() >= u32::MAX as usize {
            return Err(JsonError::TooLarge);
        }
        self.begin();
        let mut p = Parser {
            src,
            pos: 0,
            tape: self,
            check_keys,
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
        self.origin = Some((src.as_ptr() as usize, src.len()));
        Ok(())
    }

    /// The root token (index 0).
    pub fn root(&self) -> Option<&Tok> {
        self.toks.first()
    }

    /// Empties the tape for a document built token by token (a decoder of
    /// another format writing the JSON text and its tape side by side).
    pub fn begin(&mut self) {
        self.toks.clear();
        self.stack.clear();
        self.origin = None;
        self.broken = false;
    }

    /// Ends a document built token by token from `src`, the whole text:
    /// from now on [`Tape::spans`] holds for `src` (and only for it), unless
    /// the builder gave up on it ([`Tape::give_up`]).
    pub fn finish(&mut self, src: &[u8]) {
        if !self.broken {
            self.origin = Some((src.as_ptr() as usize, src.len()));
        }
    }

    /// Marks a document being built as not followed: it never spans its
    /// text, and its reader parses the text instead. What is built after
    /// is ignored (no work, and no tokens that disagree with each other).
    pub fn give_up(&mut self) {
        self.broken = true;
    }

    /// Appends the token of the one scalar written at `text[start..]`, by
    /// what it starts with (a string has escapes when it holds a `\`).
    /// Anything else than a scalar gives the document up.
    pub fn written_scalar(&mut self, text: &[u8], start: usize) {
        if self.broken {
            return;
        }
        let end = text.len();
        match text.get(start) {
            Some(b'"') if end >= start + 2 => {
                let inner = &text[start + 1..end - 1];
                let kind = if memchr::memchr(b'\\', inner).is_some() {
                    Kind::StrEsc
                } else {
                    Kind::Str
                };
                self.scalar(kind, start + 1, end - 1);
            }
            Some(b'n') => {
                self.scalar(Kind::Null, start, end);
            }
            Some(b't') => {
                self.scalar(Kind::True, start, end);
            }
            Some(b'f') => {
                self.scalar(Kind::False, start, end);
            }
            Some(b'-' | b'0'..=b'9') => {
                self.scalar(Kind::Number, start, end);
            }
            _ => self.give_up(),
        }
    }

    /// Appends a copy of the subtree of token `i` of `from` (whose text is
    /// `src`), its text now written at `at`.
    pub fn copy_subtree(&mut self, from: &Tape, i: usize, at: usize) {
        if self.broken {
            return;
        }
        let (first, last) = (i, from.toks[i].next as usize);
        let base = self.toks.len() as i64 - first as i64;
        let shift = at as i64 - i64::from(from.toks[i].start);
        for t in &from.toks[first..last] {
            self.toks.push(Tok {
                start: (i64::from(t.start) + shift) as u32,
                end: (i64::from(t.end) + shift) as u32,
                next: (i64::from(t.next) + base) as u32,
                ..*t
            });
        }
    }

    /// Removes the innermost open container and every token after it (its
    /// text was taken back).
    pub fn discard_open(&mut self) {
        if self.broken {
            return;
        }
        match self.stack.pop() {
            Some(i) => self.toks.truncate(i),
            None => self.give_up(),
        }
    }

    /// Removes every token from index `len` on (their text was taken back).
    pub fn truncate(&mut self, len: usize) {
        self.toks.truncate(len);
    }

    /// Appends a scalar token (`start..end` as in [`Tok`]); its index.
    #[inline]
    pub fn scalar(&mut self, kind: Kind, start: usize, end: usize) -> usize {
        let i = self.toks.len();
        self.toks.push(Tok {
            kind,
            hollow: false,
            start: start as u32,
            end: end as u32,
            next: i as u32 + 1,
            leaves: 1,
        });
        i
    }

    /// Opens an object or array whose `{`/`[` is at `start`.
    ///
    /// # Errors
    /// [`JsonError::TooDeep`] past [`MAX_DEPTH`].
    pub fn open(&mut self, kind: Kind, start: usize) -> Result<(), JsonError> {
        if self.broken {
            return Ok(());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        let i = self.scalar(kind, start, start);
        self.stack.push(i);
        Ok(())
    }

    /// Closes the innermost open container, `end` just past its `}`/`]`:
    /// sets its `next`, `leaves` and `hollow` from its children, and with
    /// `check_keys` refuses an object with a duplicate key. `src` is the
    /// text written so far.
    ///
    /// # Errors
    /// [`JsonError::DuplicateKey`], or no container open.
    pub fn close(&mut self, src: &[u8], end: usize, check_keys: bool) -> Result<(), JsonError> {
        if self.broken {
            return Ok(());
        }
        let Some(i) = self.stack.pop() else {
            return Err(JsonError::Syntax {
                what: "a close without an open container",
                at: end,
            });
        };
        let n = self.toks.len() as u32;
        let t = &mut self.toks[i];
        t.end = end as u32;
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
            self.members(i).for_each(|(_, v)| fold(&self.toks[v]));
        } else {
            self.elements(i).for_each(|v| fold(&self.toks[v]));
        }
        let t = &mut self.toks[i];
        t.leaves = leaves.max(1);
        t.hollow = hollow || !any;
        if object && check_keys {
            check_duplicates(src, self, i)?;
        }
        Ok(())
    }

    /// True when the tape is of `src`: made of that very text (the same
    /// bytes in memory, not another text of its length), one whole document
    /// (its root spans all of it and every container is closed).
    pub fn spans(&self, src: &[u8]) -> bool {
        self.origin == Some((src.as_ptr() as usize, src.len()))
            && self.stack.is_empty()
            && self.toks.first().is_some_and(|t| {
                t.start == 0 && t.end as usize == src.len() && t.next as usize == self.toks.len()
            })
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

/// Writes `s` as a JSON string: in quotes, with `"`, `\` and control
/// characters escaped (as `serde_json` writes it, byte for byte). Text with
/// nothing to escape, the common case, is copied whole.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Without early exit, so that the check runs over wide words.
    let plain = b
        .iter()
        .fold(true, |ok, &c| ok & (c >= 0x20) & (c != b'"') & (c != b'\\'));
    if plain {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(out, s);
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
    /// Refuse objects with duplicate keys.
    check_keys: bool,
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

    #[inline]
    fn push(&mut self, kind: Kind, start: usize, end: usize) -> usize {
        self.tape.scalar(kind, start, end)
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
                    let kind = if b == b'{' { Kind::Object } else { Kind::Array };
                    self.tape.open(kind, self.pos)?;
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
        self.tape.close(self.src, self.pos, self.check_keys)
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

/// Refuses an object of `tape` with two members of the same key.
fn check_duplicates(src: &[u8], tape: &Tape, obj: usize) -> Result<(), JsonError> {
    let same = |a: &Tok, b: &Tok| {
        if a.kind == Kind::Str && b.kind == Kind::Str {
            raw(src, a) == raw(src, b)
        } else {
            string(src, a) == string(src, b)
        }
    };
    let toks = &tape.toks;
    let n = tape.members(obj).count();
    if n <= 32 {
        for (i, (ka, _)) in tape.members(obj).enumerate() {
            let a = &toks[ka];
            if tape.members(obj).take(i).any(|(kb, _)| same(a, &toks[kb])) {
                return Err(JsonError::DuplicateKey(a.start as usize));
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(n);
        for a in tape.members(obj).map(|(k, _)| &toks[k]) {
            if !seen.insert(string(src, a)) {
                return Err(JsonError::DuplicateKey(a.start as usize));
            }
        }
    }
    Ok(())
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
