//! Reading a decoded value: the document (input bytes and their tape), scalars
//! at a path (subject, event time), times, and the scalars of a JSON-looking key.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A decoded value: the input bytes and their tape.
pub struct Doc<'a> {
    pub src: &'a [u8],
    pub tape: &'a Tape,
}

impl Doc<'_> {
    pub(super) fn tok(&self, i: usize) -> &Tok {
        &self.tape.toks[i]
    }

    /// A scalar token as a `serde_json::Value` (numbers keep their text).
    pub(super) fn scalar_value(&self, i: usize) -> Value {
        let t = self.tok(i);
        match t.kind {
            Kind::Null | Kind::Object | Kind::Array => Value::Null,
            Kind::True => Value::Bool(true),
            Kind::False => Value::Bool(false),
            Kind::Str | Kind::StrEsc => Value::String(codec::string(self.src, t).into_owned()),
            Kind::Number => serde_json::from_slice(codec::raw(self.src, t)).unwrap_or(Value::Null),
        }
    }

    pub(super) fn key_is(&self, k: usize, name: &str) -> bool {
        let t = self.tok(k);
        if t.kind == Kind::Str {
            codec::raw(self.src, t) == name.as_bytes()
        } else {
            codec::string(self.src, t) == name
        }
    }
}

/// What a path finds in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Not there: a member is missing, or `null` stands on the way.
    Missing,
    /// The path holds `null`.
    Null,
    /// A string, number or boolean.
    Scalar(Value),
    /// Not a usable scalar: an object or array at the path, something other
    /// than an object on the way, key or header bytes that are not UTF-8, or
    /// a header given more than once with different values.
    Unusable,
}

/// Reads a scalar at a path without arrays (subject, event time).
pub fn read_path(path: &FieldPath, rec: &Record<'_>, doc: &Doc<'_>) -> Found {
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => Found::Scalar(Value::String(s.to_string())),
        Err(_) => Found::Unusable,
    };
    match path {
        FieldPath::Key => rec.key.map_or(Found::Missing, text),
        FieldPath::Header(h) => {
            let mut values = rec.headers.iter().filter(|(n, _)| n == h).map(|(_, v)| v);
            match values.next() {
                None => Found::Missing,
                Some(first) if values.all(|v| v == first) => text(first),
                Some(_) => Found::Unusable,
            }
        }
        FieldPath::Value(segs) => {
            let mut at = 0usize;
            for s in segs {
                match s {
                    Segment::Field(name) => match doc.tok(at).kind {
                        Kind::Object => {
                            match doc.tape.members(at).find(|(k, _)| doc.key_is(*k, name)) {
                                Some((_, v)) => at = v,
                                None => return Found::Missing,
                            }
                        }
                        Kind::Null => return Found::Missing,
                        _ => return Found::Unusable,
                    },
                    Segment::Each => return Found::Unusable,
                }
            }
            match doc.tok(at).kind {
                Kind::Null => Found::Null,
                Kind::Object | Kind::Array => Found::Unusable,
                _ => Found::Scalar(doc.scalar_value(at)),
            }
        }
    }
}

/// Epoch millis from a number, a string of digits, or an RFC 3339 string.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().ok();
            }
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.timestamp_millis())
        }
        _ => None,
    }
}

/// Every JSON string and number in `text` (a record key that looks like
/// JSON), in order, duplicates of object members included, without building
/// a document: the candidates a key may name a subject by. A single-quoted
/// key (`'c-1'`) gives its content. At most 64.
pub(super) fn key_scalars(text: &str) -> Vec<Value> {
    const MAX: usize = 64;
    let mut out = Vec::new();
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        out.push(Value::String(inner.to_string()));
        return out;
    }
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < MAX {
        match b[i] {
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    break;
                }
                if let Ok(s) = serde_json::from_str::<String>(&text[i..=j]) {
                    out.push(Value::String(s));
                }
                i = j + 1;
            }
            b'-' | b'0'..=b'9' => {
                let j = i
                    + 1
                    + b[i + 1..]
                        .iter()
                        .take_while(|c| {
                            c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')
                        })
                        .count();
                if let Ok(n) = text[i..j].parse::<serde_json::Number>() {
                    out.push(Value::Number(n));
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}
