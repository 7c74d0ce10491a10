//! Avro values in and out of the JSON custos governs.
//!
//! The engine governs JSON (its tape), so an Avro record is decoded straight
//! from its binary form into JSON text (no value tree in between), governed,
//! and each purpose's JSON output is encoded with the purpose's derived
//! schema. How each type reads as JSON (docs/avro.md has the table): records
//! and maps are objects, arrays arrays, a union is its branch's value (no
//! wrapper), enums and strings are strings, bytes and fixed are strings of
//! code points U+0000–U+00FF (as in Avro's JSON encoding), decimals are
//! exact numbers, `date` is `YYYY-MM-DD`, `timestamp-millis` a number of
//! epoch milliseconds, `timestamp-micros`/`-nanos` RFC 3339 text.

use chrono::{DateTime, Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Number, Value};

use super::schema::{DecimalSpec, IntLogical, LongLogical, Ty};
use crate::codec::{self, Kind, Tape, Tok};

/// Why bytes did not decode with their schema, or a value did not fit one.
pub type Error = String;

const EPOCH_DAYS_CE: i32 = 719_163;

// ---------------------------------------------------------------- decoding

/// Decodes one Avro binary datum of `ty` from `src` into JSON text in `out`
/// (emptied first). Every byte must be used.
///
/// # Errors
/// Truncated or malformed data, an out-of-range union or enum index, text
/// that is not UTF-8, or bytes left over.
pub fn decode(ty: &Ty, src: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    decode_limited(ty, src, out, &mut Tape::default(), usize::MAX).map_err(|e| match e {
        DecodeError::Bad(m) | DecodeError::TooLarge(m) => m,
    })
}

/// Why a datum did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Malformed for its schema.
    Bad(String),
    /// Its JSON would be larger than the limit (zero-size items can make a
    /// small datum expand without bound: arrays of nulls, empty records).
    TooLarge(String),
}

/// [`decode`] into an empty `out` that stops once the JSON passes
/// `max_len` bytes, and fills `tape` with the tape of the JSON as it writes
/// it: the tape [`Tape::parse`] would make of `out`, without parsing it
/// (the engine governs it as is: [`crate::engine::govern_with_limits`]).
///
/// # Errors
/// As [`decode`] (a map with the same key twice included), or
/// [`DecodeError::TooLarge`].
pub fn decode_limited(
    ty: &Ty,
    src: &[u8],
    out: &mut Vec<u8>,
    tape: &mut Tape,
    max_len: usize,
) -> Result<(), DecodeError> {
    out.clear();
    tape.begin();
    let mut r = Reader {
        src,
        pos: 0,
        budget: max_len.min(u32::MAX as usize - 1),
        tape,
    };
    match r.value(ty, out) {
        Ok(()) => {}
        Err(e) if r.over(out) => {
            return Err(DecodeError::TooLarge(format!(
                "the decoded value is larger than {max_len} bytes ({e})"
            )))
        }
        Err(e) => return Err(DecodeError::Bad(e)),
    }
    if r.over(out) {
        return Err(DecodeError::TooLarge(format!(
            "the decoded value is larger than {max_len} bytes"
        )));
    }
    decode_tail(&r).map_err(DecodeError::Bad)?;
    tape.finish(out);
    Ok(())
}

fn decode_tail(r: &Reader<'_, '_>) -> Result<(), Error> {
    let src = r.src;
    if r.pos != src.len() {
        return Err(format!(
            "{} byte(s) left over after the record",
            src.len() - r.pos
        ));
    }
    Ok(())
}

struct Reader<'a, 't> {
    src: &'a [u8],
    pos: usize,
    /// Length of the output past which decoding stops.
    budget: usize,
    /// The tape of the JSON written so far.
    tape: &'t mut Tape,
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    codec::write_str(out, s);
}

/// Writes `s` as a JSON string and its token (escaped or not).
fn str_tok(out: &mut Vec<u8>, tape: &mut Tape, s: &str) {
    let start = out.len() + 1;
    write_json_str(out, s);
    let end = out.len() - 1;
    // Escapes only ever lengthen a string.
    let kind = if end - start == s.len() {
        Kind::Str
    } else {
        Kind::StrEsc
    };
    tape.scalar(kind, start, end);
}

/// Writes bytes or fixed: a decimal's exact number, else a string of code
/// points U+0000–U+00FF; and its token.
fn bytes_tok(
    out: &mut Vec<u8>,
    tape: &mut Tape,
    b: &[u8],
    decimal: Option<DecimalSpec>,
) -> Result<(), Error> {
    match decimal {
        Some(d) => {
            let start = out.len();
            out.extend_from_slice(decimal_text(b, d)?.as_bytes());
            tape.scalar(Kind::Number, start, out.len());
        }
        None => str_tok(out, tape, &latin1(b)),
    }
    Ok(())
}

/// Appends the token of what `out[start..]` holds: one number, or a string
/// `"NaN"`/`"Infinity"`/`"-Infinity"` (floats JSON cannot hold).
fn number_tok(out: &[u8], tape: &mut Tape, start: usize) {
    if out.get(start) == Some(&b'"') {
        tape.scalar(Kind::Str, start + 1, out.len() - 1);
    } else {
        tape.scalar(Kind::Number, start, out.len());
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn write_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        let _ = serde_json::to_writer(out, &x);
    } else if x.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if x > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// A decimal's unscaled two's-complement big-endian bytes as exact text.
fn decimal_text(bytes: &[u8], d: DecimalSpec) -> Result<String, Error> {
    if bytes.len() > 16 {
        return Err("a decimal longer than 16 bytes".into());
    }
    let mut v: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &b in bytes {
        v = (v << 8) | i128::from(b);
    }
    let dec = Decimal::try_from_i128_with_scale(v, d.scale)
        .map_err(|_| "a decimal out of the range custos reads (28 digits)".to_string())?;
    Ok(dec.to_string())
}

fn date_text(days: i32) -> Result<String, Error> {
    let d = NaiveDate::from_num_days_from_ce_opt(
        days.checked_add(EPOCH_DAYS_CE).ok_or("date out of range")?,
    )
    .ok_or("date out of range")?;
    Ok(format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()))
}

fn time_text(v: i64, unit: LongLogical) -> Result<String, Error> {
    let (secs, nanos, digits) = match unit {
        LongLogical::TimestampMicros => {
            (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1000, 6)
        }
        _ => (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000), 9),
    };
    let t = DateTime::from_timestamp(secs, nanos as u32).ok_or("timestamp out of range")?;
    Ok(match digits {
        6 => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        _ => t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
    })
}

impl<'a> Reader<'a, '_> {
    fn over(&self, out: &[u8]) -> bool {
        out.len() > self.budget
    }

    /// Stops a container whose JSON has grown past the budget.
    fn check(&self, out: &[u8]) -> Result<(), Error> {
        if self.over(out) {
            return Err("the decoded value is too large".into());
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.src.get(self.pos).ok_or("the data ends early")?;
        self.pos += 1;
        Ok(b)
    }

    fn long(&mut self) -> Result<i64, Error> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err("a variable-length integer is too long".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err("a variable-length integer is too long".into());
            }
        }
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn int(&mut self) -> Result<i32, Error> {
        i32::try_from(self.long()?).map_err(|_| "an int out of range".to_string())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.src.len() - self.pos < n {
            return Err("the data ends early".into());
        }
        let s = &self.src[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn len(&mut self) -> Result<usize, Error> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| "a negative length".to_string())
    }

    /// The item count of the next block of an array or map (0 at the end).
    fn block(&mut self) -> Result<usize, Error> {
        let n = self.long()?;
        let n = if n < 0 {
            // A negative count is followed by the block's size in bytes.
            let _ = self.long()?;
            n.checked_neg().ok_or("a bad block count")?
        } else {
            n
        };
        let n = usize::try_from(n).map_err(|_| "a bad block count".to_string())?;
        // Items take at least one byte except for nulls and empty records:
        // a count far beyond the data left is corruption, not a big array.
        if n > (self.src.len() - self.pos).saturating_mul(8) + 1024 {
            return Err("a block count larger than the data".into());
        }
        Ok(n)
    }

    /// The items of an array or map, block by block, comma-separated.
    fn items(
        &mut self,
        out: &mut Vec<u8>,
        mut item: impl FnMut(&mut Self, &mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut first = true;
        loop {
            let n = self.block()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                if !first {
                    out.push(b',');
                }
                first = false;
                item(self, out)?;
                self.check(out)?;
            }
        }
    }

    fn open(&mut self, kind: Kind, out: &mut Vec<u8>) -> Result<(), Error> {
        self.tape.open(kind, out.len()).map_err(|e| e.to_string())?;
        out.push(if kind == Kind::Object { b'{' } else { b'[' });
        Ok(())
    }

    fn value(&mut self, ty: &Ty, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        match ty {
            Ty::Null => {
                out.extend_from_slice(b"null");
                self.tape.scalar(Kind::Null, start, out.len());
            }
            Ty::Boolean => match self.byte()? {
                0 => {
                    out.extend_from_slice(b"false");
                    self.tape.scalar(Kind::False, start, out.len());
                }
                1 => {
                    out.extend_from_slice(b"true");
                    self.tape.scalar(Kind::True, start, out.len());
                }
                _ => return Err("a boolean that is neither 0 nor 1".into()),
            },
            Ty::Int(IntLogical::Plain) => {
                let v = self.int()?;
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                self.tape.scalar(Kind::Number, start, out.len());
            }
            Ty::Int(IntLogical::Date) => {
                let v = self.int()?;
                str_tok(out, self.tape, &date_text(v)?);
            }
            Ty::Long(LongLogical::Plain | LongLogical::TimestampMillis) => {
                let v = self.long()?;
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                self.tape.scalar(Kind::Number, start, out.len());
            }
            Ty::Long(unit) => {
                let v = self.long()?;
                str_tok(out, self.tape, &time_text(v, *unit)?);
            }
            Ty::Float => {
                let b = self.take(4)?;
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if x.is_finite() {
                    let _ = serde_json::to_writer(&mut *out, &x);
                } else {
                    write_f64(out, f64::from(x));
                }
                number_tok(out, self.tape, start);
            }
            Ty::Double => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                write_f64(out, f64::from_le_bytes(a));
                number_tok(out, self.tape, start);
            }
            Ty::Bytes(dec) => {
                let n = self.len()?;
                let b = self.take(n)?;
                bytes_tok(out, self.tape, b, *dec)?;
            }
            Ty::String(_) => {
                let n = self.len()?;
                let b = self.take(n)?;
                let s =
                    std::str::from_utf8(b).map_err(|_| "a string that is not UTF-8".to_string())?;
                str_tok(out, self.tape, s);
            }
            Ty::Fixed(f) => {
                let b = self.take(f.size)?;
                bytes_tok(out, self.tape, b, f.decimal)?;
            }
            Ty::Enum(e) => {
                let i = self.long()?;
                let s = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| format!("enum index {i} out of range"))?;
                str_tok(out, self.tape, s);
            }
            Ty::Record(r) => {
                self.open(Kind::Object, out)?;
                for (i, f) in r.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    str_tok(out, self.tape, &f.name);
                    out.push(b':');
                    self.value(&f.ty, out)?;
                    self.check(out)?;
                }
                out.push(b'}');
                // A record's field names are distinct (the schema says so).
                self.shut(out, false)?;
            }
            Ty::Array(items) => {
                self.open(Kind::Array, out)?;
                self.items(out, |r, out| r.value(items, out))?;
                out.push(b']');
                self.shut(out, false)?;
            }
            Ty::Map(values) => {
                self.open(Kind::Object, out)?;
                self.items(out, |r, out| {
                    let len = r.len()?;
                    let k = std::str::from_utf8(r.take(len)?)
                        .map_err(|_| "a map key that is not UTF-8".to_string())?;
                    str_tok(out, r.tape, k);
                    out.push(b':');
                    r.value(values, out)
                })?;
                out.push(b'}');
                // Binary Avro can repeat a map key: which one wins is up to
                // the reader, a way to smuggle a value past governance.
                self.shut(out, true)?;
            }
            Ty::Union(bs) => {
                let i = self.long()?;
                let b = usize::try_from(i)
                    .ok()
                    .and_then(|i| bs.get(i))
                    .ok_or_else(|| format!("union index {i} out of range"))?;
                self.value(b, out)?;
            }
        }
        Ok(())
    }

    /// Closes the container whose last byte was just written.
    fn shut(&mut self, out: &[u8], check_keys: bool) -> Result<(), Error> {
        self.tape
            .close(out, out.len(), check_keys)
            .map_err(|e| match e {
                crate::codec::JsonError::DuplicateKey(_) => "a map with the same key twice".into(),
                e => e.to_string(),
            })
    }
}

// ------------------------------------------- Avro's JSON encoding, read

/// Reads a value in Avro's JSON encoding (unions wrapped as
/// `{"branch": value}`) into the JSON custos governs. A union value not
/// wrapped is accepted when it fits exactly one branch.
///
/// # Errors
/// A value that does not fit the type.
pub fn from_avro_json(ty: &Ty, v: &Value) -> Result<Value, Error> {
    Ok(match (ty, v) {
        (Ty::Null, Value::Null) => Value::Null,
        (Ty::Boolean, Value::Bool(_)) => v.clone(),
        (Ty::Int(IntLogical::Date), Value::Number(n)) => {
            let d = n
                .as_i64()
                .and_then(|d| i32::try_from(d).ok())
                .ok_or("a date out of range")?;
            Value::String(date_text(d)?)
        }
        (Ty::Int(IntLogical::Date), Value::String(s)) if parse_day(s).is_some() => v.clone(),
        (Ty::Int(_), Value::Number(n)) if n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()) => {
            v.clone()
        }
        (Ty::Long(LongLogical::Plain | LongLogical::TimestampMillis), Value::Number(n))
            if n.as_i64().is_some() =>
        {
            v.clone()
        }
        (Ty::Long(unit), Value::Number(n)) => {
            Value::String(time_text(n.as_i64().ok_or("a long out of range")?, *unit)?)
        }
        (Ty::Long(_), Value::String(s)) if DateTime::parse_from_rfc3339(s).is_ok() => v.clone(),
        (Ty::Float | Ty::Double, Value::Number(_)) => v.clone(),
        (Ty::Float | Ty::Double, Value::String(s)) if special_float(s).is_some() => v.clone(),
        (Ty::Bytes(Some(d)), Value::String(s)) => {
            let b = from_latin1(s)?;
            json_number(&decimal_text(&b, *d)?)?
        }
        (Ty::Fixed(f), Value::String(s)) => {
            let b = from_latin1(s)?;
            if b.len() != f.size {
                return Err(format!(
                    "fixed `{}` needs {} bytes, not {}",
                    f.name,
                    f.size,
                    b.len()
                ));
            }
            match f.decimal {
                Some(d) => json_number(&decimal_text(&b, d)?)?,
                None => v.clone(),
            }
        }
        (Ty::Bytes(None), Value::String(s)) => {
            from_latin1(s)?;
            v.clone()
        }
        (Ty::String(_), Value::String(_)) => v.clone(),
        (Ty::Enum(e), Value::String(s)) if e.symbols.contains(s) => v.clone(),
        (Ty::Record(r), Value::Object(o)) => {
            let mut out = Map::new();
            for f in &r.fields {
                let fv = match (o.get(&f.name), &f.default) {
                    (Some(x), _) => {
                        from_avro_json(&f.ty, x).map_err(|e| format!("{}: {e}", f.name))?
                    }
                    (None, Some(d)) => default_value(&f.ty, d)?,
                    (None, None) => return Err(format!("field `{}` is missing", f.name)),
                };
                out.insert(f.name.clone(), fv);
            }
            if let Some(extra) = o.keys().find(|k| !r.fields.iter().any(|f| &f.name == *k)) {
                return Err(format!("`{extra}` is not a field of `{}`", r.name));
            }
            Value::Object(out)
        }
        (Ty::Array(items), Value::Array(a)) => Value::Array(
            a.iter()
                .map(|x| from_avro_json(items, x))
                .collect::<Result<_, _>>()?,
        ),
        (Ty::Map(values), Value::Object(o)) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), from_avro_json(values, x)?)))
                .collect::<Result<_, Error>>()?,
        ),
        (Ty::Union(bs), Value::Null) if bs.contains(&Ty::Null) => Value::Null,
        (Ty::Union(bs), Value::Object(o)) if o.len() == 1 => {
            let (name, inner) = o.iter().next().expect("one member");
            match bs
                .iter()
                .find(|b| b.branch_name() == *name || short_name(b) == Some(name))
            {
                Some(b) => from_avro_json(b, inner)?,
                None => unwrapped(bs, v)?,
            }
        }
        (Ty::Union(bs), _) => unwrapped(bs, v)?,
        (ty, v) => {
            return Err(format!(
                "a {} value where the schema says {}",
                kind(v),
                ty.branch_name()
            ))
        }
    })
}

fn short_name(t: &Ty) -> Option<&str> {
    match t {
        Ty::Record(r) => r.name.rsplit('.').next(),
        Ty::Enum(e) => e.name.rsplit('.').next(),
        Ty::Fixed(f) => f.name.rsplit('.').next(),
        _ => None,
    }
}

fn unwrapped(bs: &[Ty], v: &Value) -> Result<Value, Error> {
    let fits: Vec<Value> = bs
        .iter()
        .filter_map(|b| from_avro_json(b, v).ok())
        .collect();
    match <[Value; 1]>::try_from(fits) {
        Ok([one]) => Ok(one),
        Err(_) => Err(format!(
            "a {} value that does not name its union branch ({{\"<branch>\": value}})",
            kind(v)
        )),
    }
}

fn default_value(ty: &Ty, d: &Value) -> Result<Value, Error> {
    // A union's default is a value of its first branch, unwrapped.
    match ty {
        Ty::Union(bs) => from_avro_json(bs.first().ok_or("an empty union")?, d),
        t => from_avro_json(t, d),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn from_latin1(s: &str) -> Result<Vec<u8>, Error> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| "bytes written as text above U+00FF".to_string())
        })
        .collect()
}

fn json_number(text: &str) -> Result<Value, Error> {
    serde_json::from_str::<Number>(text)
        .map(Value::Number)
        .map_err(|_| "a decimal that is not a number".to_string())
}

fn special_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn parse_day(s: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.num_days_from_ce() - EPOCH_DAYS_CE)
}

fn parse_time(s: &str, unit: LongLogical) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    match unit {
        LongLogical::TimestampMicros => Some(t.timestamp_micros()),
        LongLogical::TimestampNanos => t.timestamp_nanos_opt(),
        _ => Some(t.timestamp_millis()),
    }
}

// ---------------------------------------------------------------- encoding

/// True when `v` is the JSON kind `ty` reads as (a string for text types, a
/// number for numeric ones, …).
fn same_kind(ty: &Ty, v: &Value) -> bool {
    use super::schema::Shape;
    matches!(
        (ty.shape(), v),
        (Shape::Null, Value::Null)
            | (Shape::Bool, Value::Bool(_))
            | (Shape::Number, Value::Number(_))
            | (Shape::Text, Value::String(_))
    ) || matches!(
        (ty, v),
        (Ty::Record(_) | Ty::Map(_), Value::Object(_)) | (Ty::Array(_), Value::Array(_))
    )
}

/// The union branch to write `v` as: the first that fits and reads as the
/// same JSON kind, else the first that fits at all (`"NaN"` for a double).
pub fn pick_branch(bs: &[Ty], v: &Value) -> Option<usize> {
    bs.iter()
        .position(|b| same_kind(b, v) && fits(b, v))
        .or_else(|| bs.iter().position(|b| fits(b, v)))
}

/// True when `v` can be written as `ty` (used to choose a union branch).
pub fn fits(ty: &Ty, v: &Value) -> bool {
    match (ty, v) {
        (Ty::Null, Value::Null) => true,
        (Ty::Boolean, Value::Bool(_)) => true,
        (Ty::Int(IntLogical::Date), Value::String(s)) => parse_day(s).is_some(),
        (Ty::Int(_), Value::Number(n)) => integral(n).is_some_and(|x| i32::try_from(x).is_ok()),
        (Ty::Long(_), Value::Number(n)) => integral(n).is_some(),
        (Ty::Long(u), Value::String(s)) => parse_time(s, *u).is_some(),
        (Ty::Float | Ty::Double, Value::Number(_)) => true,
        (Ty::Float | Ty::Double, Value::String(s)) => special_float(s).is_some(),
        (Ty::Bytes(Some(d)), Value::Number(n)) => unscaled(n, *d).is_ok(),
        (Ty::Fixed(f), Value::Number(n)) => f.decimal.is_some_and(|d| {
            unscaled(n, d).is_ok_and(|u| twos_complement(u, Some(f.size)).is_ok())
        }),
        (Ty::Bytes(None), Value::String(s)) => from_latin1(s).is_ok(),
        (Ty::Fixed(f), Value::String(s)) => {
            f.decimal.is_none() && from_latin1(s).is_ok_and(|b| b.len() == f.size)
        }
        (Ty::String(_), Value::String(_)) => true,
        (Ty::Enum(e), Value::String(s)) => e.symbols.contains(s),
        (Ty::Record(r), Value::Object(o)) => {
            o.keys().all(|k| r.fields.iter().any(|f| &f.name == k))
        }
        (Ty::Map(_), Value::Object(_)) => true,
        (Ty::Array(_), Value::Array(_)) => true,
        (Ty::Union(bs), v) => bs.iter().any(|b| fits(b, v)),
        _ => false,
    }
}

fn integral(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

fn unscaled(n: &Number, d: DecimalSpec) -> Result<i128, Error> {
    let text = n.to_string();
    let x = if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text)
    } else {
        Decimal::from_str_exact(&text)
    }
    .map_err(|_| "a decimal out of range".to_string())?;
    let mut x = x.round_dp_with_strategy(d.scale, RoundingStrategy::MidpointAwayFromZero);
    x.rescale(d.scale);
    let m = x.mantissa();
    if d.precision < 39 && m.unsigned_abs() >= 10u128.pow(d.precision) {
        return Err(format!("a decimal with more than {} digits", d.precision));
    }
    Ok(m)
}

fn twos_complement(v: i128, size: Option<usize>) -> Result<Vec<u8>, Error> {
    let full = v.to_be_bytes();
    // Minimal length: drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < 15 {
        let (b, next) = (full[start], full[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    let minimal = &full[start..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(n) if n >= minimal.len() => {
            let fill = if v < 0 { 0xff } else { 0 };
            let mut out = vec![fill; n - minimal.len()];
            out.extend_from_slice(minimal);
            Ok(out)
        }
        Some(n) => Err(format!("a decimal that does not fit in {n} bytes")),
    }
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// What a record field holds when governance left nothing there: null, an
/// empty container, or (for a record) a record of such values.
fn missing(ty: &Ty) -> Option<Value> {
    match ty {
        Ty::Null => Some(Value::Null),
        Ty::Union(bs) if bs.contains(&Ty::Null) => Some(Value::Null),
        Ty::Array(_) => Some(Value::Array(Vec::new())),
        Ty::Map(_) => Some(Value::Object(Map::new())),
        Ty::Record(_) => Some(Value::Object(Map::new())),
        _ => None,
    }
}

fn number_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => special_float(s),
        _ => None,
    }
}

/// Encodes a governed JSON value as Avro binary of type `ty`.
///
/// # Errors
/// The value does not fit the type (the caller dead-letters the record).
pub fn encode(ty: &Ty, v: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match (ty, v) {
        (Ty::Null, Value::Null) => {}
        (Ty::Boolean, Value::Bool(b)) => out.push(u8::from(*b)),
        (Ty::Int(IntLogical::Date), Value::String(s)) => {
            write_long(out, i64::from(parse_day(s).ok_or("not a YYYY-MM-DD date")?));
        }
        (Ty::Int(_), Value::Number(n)) => {
            let x = integral(n)
                .filter(|x| i32::try_from(*x).is_ok())
                .ok_or("not an int")?;
            write_long(out, x);
        }
        (Ty::Long(_), Value::Number(n)) => write_long(out, integral(n).ok_or("not a long")?),
        (Ty::Long(u), Value::String(s)) => {
            write_long(out, parse_time(s, *u).ok_or("not an RFC 3339 time")?);
        }
        (Ty::Float, v) => {
            let x = number_f64(v).ok_or_else(|| format!("a {} where a float belongs", kind(v)))?;
            out.extend_from_slice(&(x as f32).to_le_bytes());
        }
        (Ty::Double, v) => {
            let x = number_f64(v).ok_or_else(|| format!("a {} where a double belongs", kind(v)))?;
            out.extend_from_slice(&x.to_le_bytes());
        }
        (Ty::Bytes(Some(d)), Value::Number(n)) => {
            write_bytes(out, &twos_complement(unscaled(n, *d)?, None)?);
        }
        (Ty::Fixed(f), Value::Number(n)) if f.decimal.is_some() => {
            let d = f.decimal.expect("checked");
            out.extend_from_slice(&twos_complement(unscaled(n, d)?, Some(f.size))?);
        }
        (Ty::Bytes(None), Value::String(s)) => write_bytes(out, &from_latin1(s)?),
        (Ty::Fixed(f), Value::String(s)) if f.decimal.is_none() => {
            let b = from_latin1(s)?;
            if b.len() != f.size {
                return Err(format!("fixed `{}` needs {} bytes", f.name, f.size));
            }
            out.extend_from_slice(&b);
        }
        (Ty::String(_), Value::String(s)) => write_bytes(out, s.as_bytes()),
        (Ty::Enum(e), Value::String(s)) => {
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| format!("not a symbol of enum `{}`", e.name))?;
            write_long(out, i as i64);
        }
        (Ty::Record(r), Value::Object(o)) => {
            for f in &r.fields {
                match o.get(&f.name) {
                    Some(x) => encode(&f.ty, x, out).map_err(|e| format!("{}.{e}", f.name))?,
                    None => {
                        let m = missing(&f.ty).ok_or_else(|| format!("{}: missing", f.name))?;
                        encode(&f.ty, &m, out)?;
                    }
                }
            }
        }
        (Ty::Array(items), Value::Array(a)) => {
            if !a.is_empty() {
                write_long(out, a.len() as i64);
                for x in a {
                    encode(items, x, out)?;
                }
            }
            out.push(0);
        }
        (Ty::Map(values), Value::Object(o)) => {
            if !o.is_empty() {
                write_long(out, o.len() as i64);
                for (k, x) in o {
                    write_bytes(out, k.as_bytes());
                    encode(values, x, out)?;
                }
            }
            out.push(0);
        }
        (Ty::Union(bs), v) => {
            let i = pick_branch(bs, v)
                .ok_or_else(|| format!("a {} that fits no branch of its union", kind(v)))?;
            write_long(out, i as i64);
            encode(&bs[i], v, out)?;
        }
        (ty, v) => {
            return Err(format!(
                ": a {} where the schema says {}",
                kind(v),
                ty.branch_name()
            ))
        }
    }
    Ok(())
}

// ------------------------------------------ Avro's JSON encoding, written

/// Writes a governed JSON value in Avro's JSON encoding for type `ty`
/// (what `custos apply --format avro` prints).
///
/// # Errors
/// The value does not fit the type.
pub fn to_avro_json(ty: &Ty, v: &Value) -> Result<Value, Error> {
    Ok(match (ty, v) {
        (Ty::Int(IntLogical::Date), Value::String(s)) => {
            Value::from(parse_day(s).ok_or("not a YYYY-MM-DD date")?)
        }
        (Ty::Long(u), Value::String(s)) => {
            Value::from(parse_time(s, *u).ok_or("not an RFC 3339 time")?)
        }
        (Ty::Bytes(Some(d)), Value::Number(n)) => {
            Value::String(latin1(&twos_complement(unscaled(n, *d)?, None)?))
        }
        (Ty::Fixed(f), Value::Number(n)) if f.decimal.is_some() => {
            let d = f.decimal.expect("checked");
            Value::String(latin1(&twos_complement(unscaled(n, d)?, Some(f.size))?))
        }
        (Ty::Record(r), Value::Object(o)) => {
            let mut out = Map::new();
            for f in &r.fields {
                let x = match o.get(&f.name) {
                    Some(x) => x.clone(),
                    None => missing(&f.ty).ok_or_else(|| format!("{}: missing", f.name))?,
                };
                out.insert(
                    f.name.clone(),
                    to_avro_json(&f.ty, &x).map_err(|e| format!("{}.{e}", f.name))?,
                );
            }
            Value::Object(out)
        }
        (Ty::Array(items), Value::Array(a)) => Value::Array(
            a.iter()
                .map(|x| to_avro_json(items, x))
                .collect::<Result<_, _>>()?,
        ),
        (Ty::Map(values), Value::Object(o)) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), to_avro_json(values, x)?)))
                .collect::<Result<_, Error>>()?,
        ),
        (Ty::Union(bs), v) => {
            let b = pick_branch(bs, v)
                .map(|i| &bs[i])
                .ok_or_else(|| format!("a {} that fits no branch of its union", kind(v)))?;
            if *b == Ty::Null {
                Value::Null
            } else {
                let mut m = Map::new();
                m.insert(b.branch_name(), to_avro_json(b, v)?);
                Value::Object(m)
            }
        }
        (ty, v) if fits(ty, v) => match (ty, v) {
            (Ty::Int(_) | Ty::Long(_), Value::Number(n)) => {
                Value::from(integral(n).unwrap_or_default())
            }
            _ => v.clone(),
        },
        (ty, v) => {
            return Err(format!(
                ": a {} where the schema says {}",
                kind(v),
                ty.branch_name()
            ))
        }
    })
}

// ------------------------------------------ encoding straight from JSON text

/// Encodes governed JSON text (one purpose's output) as Avro binary of type
/// `ty`, walking a tape of the text: no value tree is built, only scalars
/// are looked at one by one. `tape` is reused between calls.
///
/// # Errors
/// Not JSON (a bug), or the value does not fit the type.
pub fn encode_json(ty: &Ty, json: &[u8], tape: &mut Tape, out: &mut Vec<u8>) -> Result<(), Error> {
    tape.parse_written(json)
        .map_err(|e| format!("governed output is not JSON: {e}"))?;
    encode_tape(ty, json, tape, out)
}

/// [`encode_json`] with the tape of `json` already made (by the walk that
/// wrote it: [`crate::engine::Scratch::output_tape`]).
///
/// # Errors
/// An empty tape, or the value does not fit the type.
pub fn encode_tape(ty: &Ty, json: &[u8], tape: &Tape, out: &mut Vec<u8>) -> Result<(), Error> {
    if tape.toks.is_empty() {
        return Err("an empty output".into());
    }
    enc_tok(ty, json, tape, 0, out)
}

fn scalar_value(src: &[u8], t: &Tok) -> Value {
    match t.kind {
        Kind::Null => Value::Null,
        Kind::True => Value::Bool(true),
        Kind::False => Value::Bool(false),
        Kind::Number => std::str::from_utf8(codec::raw(src, t))
            .ok()
            .and_then(|s| s.parse::<Number>().ok())
            .map_or(Value::Null, Value::Number),
        Kind::Str | Kind::StrEsc => Value::String(codec::string(src, t).into_owned()),
        Kind::Object | Kind::Array => Value::Null,
    }
}

/// A finite number's value as a double (as `serde_json::Number::as_f64`;
/// `1e400` is not one, and goes the way of a number that does not fit).
fn plain_f64(raw: &[u8]) -> Option<f64> {
    std::str::from_utf8(raw)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

/// An integer written as plain digits (an optional `-`, no fraction or exponent).
fn plain_int<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn key_is(tape: &Tape, src: &[u8], k: usize, name: &str) -> bool {
    let kt = &tape.toks[k];
    if kt.kind == Kind::Str {
        codec::raw(src, kt) == name.as_bytes()
    } else {
        codec::string(src, kt) == name
    }
}

fn member(tape: &Tape, src: &[u8], obj: usize, name: &str) -> Option<usize> {
    tape.members(obj)
        .find_map(|(k, v)| key_is(tape, src, k, name).then_some(v))
}

fn fits_tok(ty: &Ty, src: &[u8], tape: &Tape, i: usize) -> bool {
    let t = &tape.toks[i];
    match (ty, t.kind) {
        (Ty::Union(bs), _) => bs.iter().any(|b| fits_tok(b, src, tape, i)),
        (Ty::Record(r), Kind::Object) => tape.members(i).all(|(k, _)| {
            r.fields
                .iter()
                .any(|f| codec::string(src, &tape.toks[k]) == f.name.as_str())
        }),
        (Ty::Map(_), Kind::Object) | (Ty::Array(_), Kind::Array) => true,
        (_, Kind::Object | Kind::Array) => false,
        (ty, _) => fits(ty, &scalar_value(src, t)),
    }
}

fn enc_tok(ty: &Ty, src: &[u8], tape: &Tape, i: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let t = tape.toks[i];
    match (ty, t.kind) {
        (Ty::Record(r), Kind::Object) => {
            // Outputs keep the schema's field order: each field is looked
            // for at the member after the last one found first.
            let end = t.next as usize;
            let mut at = i + 1;
            for f in &r.fields {
                let found = if at < end && key_is(tape, src, at, &f.name) {
                    let v = at + 1;
                    at = tape.toks[v].next as usize;
                    Some(v)
                } else {
                    member(tape, src, i, &f.name)
                };
                match found {
                    Some(v) => {
                        enc_tok(&f.ty, src, tape, v, out).map_err(|e| format!("{}.{e}", f.name))?
                    }
                    None => {
                        let m = missing(&f.ty).ok_or_else(|| format!("{}: missing", f.name))?;
                        encode(&f.ty, &m, out)?;
                    }
                }
            }
        }
        (Ty::Map(values), Kind::Object) => {
            let n = tape.members(i).count();
            if n > 0 {
                write_long(out, n as i64);
                for (k, v) in tape.members(i) {
                    write_bytes(out, codec::string(src, &tape.toks[k]).as_bytes());
                    enc_tok(values, src, tape, v, out)?;
                }
            }
            out.push(0);
        }
        (Ty::Array(items), Kind::Array) => {
            let n = tape.elements(i).count();
            if n > 0 {
                write_long(out, n as i64);
                for e in tape.elements(i) {
                    enc_tok(items, src, tape, e, out)?;
                }
            }
            out.push(0);
        }
        (Ty::Union(bs), Kind::Object | Kind::Array) => {
            let b = bs
                .iter()
                .position(|b| fits_tok(b, src, tape, i))
                .ok_or_else(|| ": a value that fits no branch of its union".to_string())?;
            write_long(out, b as i64);
            enc_tok(&bs[b], src, tape, i, out)?;
        }
        // The common unions, `["null", T]` and one string branch, by the
        // token's kind: null is only ever written as null, and a string
        // takes any text, but only where it is the union's one text branch
        // (a derived union can have more: `[enum, string]` for a scanned
        // enum, where a symbol goes to the enum as `pick_branch` says).
        (Ty::Union(bs), Kind::Null) if bs.contains(&Ty::Null) => {
            let b = bs.iter().position(|b| *b == Ty::Null).unwrap_or(0);
            write_long(out, b as i64);
        }
        (Ty::Union(bs), Kind::Str | Kind::StrEsc)
            if bs
                .iter()
                .filter(|b| b.shape() == super::schema::Shape::Text)
                .count()
                == 1
                && bs.iter().any(|b| matches!(b, Ty::String(_))) =>
        {
            let b = bs
                .iter()
                .position(|b| matches!(b, Ty::String(_)))
                .unwrap_or(0);
            write_long(out, b as i64);
            enc_tok(&bs[b], src, tape, i, out)?;
        }
        (Ty::Union(bs), _) => {
            let v = scalar_value(src, &t);
            let b = pick_branch(bs, &v)
                .ok_or_else(|| ": a value that fits no branch of its union".to_string())?;
            write_long(out, b as i64);
            encode(&bs[b], &v, out)?;
        }
        // Numbers read straight from their text where it is plain (else as
        // below, through a JSON number: `1.0` or `1e3` for a long).
        (Ty::Long(_), Kind::Number) if plain_int::<i64>(codec::raw(src, &t)).is_some() => {
            write_long(
                out,
                plain_int::<i64>(codec::raw(src, &t)).unwrap_or_default(),
            );
        }
        (Ty::Int(_), Kind::Number) if plain_int::<i32>(codec::raw(src, &t)).is_some() => {
            let x = plain_int::<i32>(codec::raw(src, &t)).unwrap_or_default();
            write_long(out, i64::from(x));
        }
        (Ty::Double | Ty::Float, Kind::Number) if plain_f64(codec::raw(src, &t)).is_some() => {
            let x = plain_f64(codec::raw(src, &t)).unwrap_or_default();
            if *ty == Ty::Float {
                out.extend_from_slice(&(x as f32).to_le_bytes());
            } else {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        // Text kept as text: its bytes, without a value in between.
        (Ty::String(_), Kind::Str) => write_bytes(out, codec::raw(src, &t)),
        (Ty::String(_), Kind::StrEsc) => write_bytes(out, codec::string(src, &t).as_bytes()),
        (ty, Kind::Object | Kind::Array) => {
            return Err(format!(
                ": a container where the schema says {}",
                ty.branch_name()
            ))
        }
        (ty, _) => encode(ty, &scalar_value(src, &t), out)?,
    }
    Ok(())
}
