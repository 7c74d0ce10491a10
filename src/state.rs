//! The data subject's wishes: consent, objection and erasure (docs/subjects.md).
//!
//! The engine asks a [`SubjectState`]; this module holds the in-memory
//! implementation fed from the compacted consent and erasure topics (or, for
//! `custos apply`, from NDJSON files), and the one canonical form of a subject
//! id that events, consent and erasure records all go through. It parses
//! records but does no I/O and never logs.
//!
//! Every malformed or ambiguous record is read the most protective way before
//! the error is returned: consent withdrawn (and objection raised) for every
//! purpose, erasure applied to the record's key.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::codec::{JsonError, Tape};

/// What the engine needs to know about a subject at processing time.
pub trait SubjectState {
    /// True once an erasure request for the subject has been read.
    fn is_erased(&self, subject: &str) -> bool;
    /// For the purpose with this index in the policy: `Some(true)` consent
    /// granted; `Some(false)` consent withdrawn or objection; `None` no record
    /// (no consent, no objection).
    fn consent(&self, subject: &str, purpose: usize) -> Option<bool>;
    /// The subject's data key under the KEK named `kek` (the `encrypt`
    /// action), created when the subject has none yet. Without one the
    /// engine redacts what it would have encrypted (fail closed); the
    /// worker's implementation stops the worker when it cannot get a key.
    ///
    /// # Errors
    /// No key source (the default), or none reachable.
    fn data_key(
        &self,
        kek: &str,
        subject: &str,
    ) -> Result<crate::crypto::DataKey, crate::crypto::Unavailable> {
        let _ = (kek, subject);
        Err(crate::crypto::Unavailable)
    }
}

/// Subject state with data keys: consent and erasure from `state`, data
/// keys (for `encrypt`) from `keys`.
pub struct WithKeys<'a> {
    pub state: &'a dyn SubjectState,
    pub keys: &'a dyn crate::crypto::KeySource,
}

impl SubjectState for WithKeys<'_> {
    fn is_erased(&self, subject: &str) -> bool {
        self.state.is_erased(subject)
    }

    fn consent(&self, subject: &str, purpose: usize) -> Option<bool> {
        self.state.consent(subject, purpose)
    }

    fn data_key(
        &self,
        kek: &str,
        subject: &str,
    ) -> Result<crate::crypto::DataKey, crate::crypto::Unavailable> {
        self.keys.data_key(kek, subject)
    }
}

/// One subject's consent record as bit sets over the policy's purposes
/// (packed to 4-byte alignment: a table entry is 28 bytes, not 32).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
struct Wishes {
    granted: u64,
    withdrawn: u64,
}

/// Consent and erasure state held in memory.
///
/// Subjects are held as keyed hashes (SipHash-1-3 under a key drawn at
/// start, 96 bits kept) of their canonical ids, not as the ids: 12 bytes
/// per subject whatever the id's length, in a [`table::SubjectTable`]
/// (31 to 36 bytes per subject with consent or erasure, `cargo bench
/// --bench state`), and a memory dump holds no subject id. An id sharing
/// a stored subject's 96 bits takes about 2^96 / (subjects held) tries
/// (2^73 at 10 million) under a key the attacker does not know, with
/// nothing but the worker's behaviour to tell a hit.
#[derive(Default, Clone)]
pub struct MemoryState {
    /// The policy's purposes, in policy order (a purpose's index is its bit).
    purposes: Vec<Box<str>>,
    /// Consent wishes, and erased subjects as [`ERASED`]: one table, so a
    /// subject costs one entry whichever it has.
    subjects: table::SubjectTable<Wishes>,
    erased: usize,
    /// The hash key (zero for `Default`, random from `new`).
    key: (u64, u64),
}

impl std::fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash key: with it, ids could be tried against the table.
        f.debug_struct("MemoryState")
            .field("purposes", &self.purposes)
            .field("consent_subjects", &self.consent_subjects())
            .field("erased_subjects", &self.erased)
            .finish_non_exhaustive()
    }
}

/// A subject as the table holds it (a keyed hash of its canonical id).
type Id = [u8; 16];

/// An erased subject's entry: nothing granted, everything withdrawn (as
/// `deny_all`) and the grant bits all set, which no consent record yields.
const ERASED: Wishes = Wishes {
    granted: u64::MAX,
    withdrawn: u64::MAX,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record has no `subject` (a string or number) and no key")]
    NoSubject,
    #[error("record's `subject` is not a string or number")]
    BadSubject,
    #[error("`purposes` must map purpose names to true or false")]
    BadPurposes,
}

/// What applying a record did that the caller should log and count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Purposes the record names that the policy does not have: ignored,
    /// never a grant.
    pub unknown_purposes: usize,
    /// The record key and the body's `subject` disagree (or the body names
    /// several subjects): read the most protective way.
    pub mismatch: bool,
    /// The record has duplicate JSON keys: read as a withdrawal.
    pub duplicate_keys: bool,
    /// Erasure records: the subjects erased by this record that were not before.
    pub newly_erased: Vec<String>,
}

/// A subject id that cannot be used: an object, array or boolean, a number
/// too large to write out, or bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unusable;

/// The canonical form of a subject id given as text (a string value, a
/// record key, a header): invisible characters (Unicode default-ignorable
/// code points such as zero-width spaces, soft hyphens and byte-order marks,
/// and control characters) removed, Unicode NFKC (full-width `ｃ-４` is
/// `c-4`), then digits of every script folded to ASCII and Unicode dashes
/// and spaces to `-` and ` ` (`c‐٤` is `c-4`), surrounding white space
/// removed. Empty text is no subject. Case
/// is kept: ids are case-sensitive.
pub fn canonical_subject_str(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let folded: String = if t.is_ascii() && !t.bytes().any(|b| b.is_ascii_control()) {
        t.to_string()
    } else {
        // Then the detectors' fold: digits of every script to ASCII,
        // Unicode dashes to `-`, Unicode spaces to ` `.
        t.chars()
            .filter(|c| !invisible(*c))
            .nfkc()
            .filter_map(crate::classify::fold_char)
            .collect::<String>()
            .trim()
            .to_string()
    };
    (!folded.is_empty()).then_some(folded)
}

/// Characters that render as nothing: control characters and Unicode's
/// default-ignorable code points (DerivedCoreProperties.txt).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5
            | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0
            | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
}

/// The canonical form of a subject id found in a JSON value: strings as
/// [`canonical_subject_str`], numbers in canonical decimal (`42` for `42`,
/// `42.0` and `4.2e1`), `null` is no subject.
///
/// # Errors
/// [`Unusable`] for objects, arrays, booleans and numbers whose decimal form
/// would be longer than 100 digits.
pub fn canonical_subject(v: &Value) -> Result<Option<String>, Unusable> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(canonical_subject_str(s)),
        Value::Number(n) => canonical_number(&n.to_string()).map(Some).ok_or(Unusable),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(Unusable),
    }
}

/// A JSON number's text in canonical decimal: no exponent, no leading zeros,
/// no trailing fractional zeros, no `-0`. `None` when it is not a JSON number
/// or its decimal form would exceed 100 digits.
pub fn canonical_number(raw: &str) -> Option<String> {
    const MAX_DIGITS: i64 = 100;
    let s = raw.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, and where the decimal point falls in them.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let point = i64::try_from(int.len()).ok()?.checked_add(exp)?;
    let first = digits.iter().position(|&d| d != b'0');
    let Some(first) = first else {
        return Some("0".to_string());
    };
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    // Significant digits are digits[first..=last]; their span in the output
    // runs from min(first, point) to max(last + 1, point).
    let lo = (first as i64).min(point);
    let hi = (last as i64 + 1).max(point);
    if hi - lo > MAX_DIGITS {
        return None;
    }
    let mut out = String::with_capacity((hi - lo + 3) as usize);
    if neg {
        out.push('-');
    }
    let digit = |i: i64| -> char {
        if i >= 0 && (i as usize) < digits.len() && i >= first as i64 && i <= last as i64 {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if point <= first as i64 {
        out.push('0');
    } else {
        for i in (first as i64).min(point)..point {
            out.push(digit(i));
        }
    }
    if (last as i64) >= point {
        out.push('.');
        for i in point..=last as i64 {
            out.push(digit(i));
        }
    }
    Some(out)
}

/// A JSON object's members in order, duplicates kept (serde_json's `Map`
/// keeps only the last).
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, Value>()? {
                    v.push(e);
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A consent or erasure record, read strictly.
struct Parsed {
    members: Vec<(String, Value)>,
    duplicate_keys: bool,
}

fn parse_record(bytes: &[u8]) -> Result<Parsed, RecordError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let duplicate_keys = match Tape::default().parse(bytes) {
        Ok(()) => false,
        Err(JsonError::DuplicateKey(_)) => true,
        Err(e) => return Err(RecordError::Json(e.to_string())),
    };
    let Pairs(members) =
        serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
    Ok(Parsed {
        members,
        duplicate_keys,
    })
}

/// The subjects a record names: its key and every `subject` member of its body.
/// What an erasure record names, for carrying it out: every subject it
/// erases (the key's, then the body's, as [`MemoryState::apply_erasure`]
/// reads them; a malformed record erases its key alone) and its
/// `requested_at` when that is a string.
pub fn erasure_request(key: Option<&str>, value: Option<&[u8]>) -> (Vec<String>, Option<String>) {
    let key_subject = key.and_then(canonical_subject_str);
    let Some(bytes) = value else {
        return (Vec::new(), None);
    };
    let Ok(parsed) = parse_record(bytes) else {
        return (key_subject.into_iter().collect(), None);
    };
    let requested_at = parsed
        .members
        .iter()
        .find(|(k, _)| k == "requested_at")
        .and_then(|(_, v)| v.as_str().map(str::to_string));
    let subjects = Subjects::of(key, &parsed.members);
    let mut out: Vec<String> = key_subject.into_iter().collect();
    // Without a key (an NDJSON file), every subject the body names.
    if subjects.key.is_none() && !subjects.unusable {
        for b in subjects.body {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    (out, requested_at)
}

struct Subjects {
    key: Option<String>,
    body: Vec<String>,
    /// A `subject` member that is not a string, number or null.
    unusable: bool,
}

impl Subjects {
    fn of(key: Option<&str>, members: &[(String, Value)]) -> Subjects {
        let mut body = Vec::new();
        let mut unusable = false;
        for (_, v) in members.iter().filter(|(k, _)| k == "subject") {
            match canonical_subject(v) {
                Ok(Some(s)) => {
                    if !body.contains(&s) {
                        body.push(s);
                    }
                }
                Ok(None) => {}
                Err(Unusable) => unusable = true,
            }
        }
        Subjects {
            key: key.and_then(canonical_subject_str),
            body,
            unusable,
        }
    }

    /// Key and body disagree, or the body names more than one subject.
    fn mismatch(&self) -> bool {
        self.body.len() > 1
            || matches!((&self.key, self.body.first()), (Some(k), Some(b)) if k != b)
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.key
            .iter()
            .chain(self.body.iter().filter(|b| Some(*b) != self.key.as_ref()))
    }
}

impl MemoryState {
    /// Empty state for a policy whose purposes are `purposes` (in policy order).
    pub fn new<S: AsRef<str>>(purposes: &[S]) -> Self {
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            // Still correct, only the hashes are predictable.
            tracing::warn!("no OS randomness for the subject-state hash key: using a fixed key");
        }
        let (a, b) = random.split_at(8);
        MemoryState {
            purposes: purposes.iter().map(|p| p.as_ref().into()).collect(),
            key: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
            ..Self::default()
        }
    }

    fn is_erased_id(&self, id: &Id) -> bool {
        self.subjects.get(id) == Some(ERASED)
    }

    /// Forgets a subject's consent (never an erasure).
    fn forget_consent(&mut self, id: &Id) {
        if !self.is_erased_id(id) {
            self.subjects.remove(id);
        }
    }

    /// The stored form of a canonical subject id.
    fn id(&self, subject: &str) -> Id {
        use std::hash::Hasher as _;
        let mut h = siphasher::sip128::SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(subject.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h)
            .as_u128()
            .to_le_bytes()
    }

    /// Empty state for the purposes of `policy`.
    pub fn for_policy(policy: &crate::policy::Policy) -> Self {
        let names: Vec<&str> = policy.purposes.iter().map(|p| p.name.as_str()).collect();
        Self::new(&names)
    }

    /// Applies one consent-topic record. `key` is the record key (the
    /// subject); `value` `None` is a tombstone. A later record of a subject
    /// replaces the earlier one whole.
    ///
    /// # Errors
    /// What is wrong with a malformed record. Before returning it, every
    /// subject the record names (key and body) is set to "every consent
    /// withdrawn, objection to every purpose".
    pub fn apply_consent(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Result<Applied, RecordError> {
        let Some(bytes) = value else {
            let subject = key
                .and_then(canonical_subject_str)
                .ok_or(RecordError::NoSubject)?;
            {
                let id = self.id(subject.as_str());
                self.forget_consent(&id);
            }
            return Ok(Applied::default());
        };
        let parsed = match parse_record(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.deny_key(key);
                return Err(e);
            }
        };
        let subjects = Subjects::of(key, &parsed.members);
        if subjects.unusable {
            self.deny_subjects(&subjects);
            return Err(RecordError::BadSubject);
        }
        if subjects.key.is_none() && subjects.body.is_empty() {
            return Err(RecordError::NoSubject);
        }
        let mut applied = Applied {
            mismatch: subjects.mismatch(),
            duplicate_keys: parsed.duplicate_keys,
            ..Applied::default()
        };
        if applied.mismatch || applied.duplicate_keys {
            self.deny_subjects(&subjects);
            return Ok(applied);
        }
        let Some(subject) = subjects.all().next().cloned() else {
            return Err(RecordError::NoSubject);
        };
        let purposes = parsed
            .members
            .iter()
            .rev()
            .find(|(k, _)| k == "purposes")
            .map(|(_, v)| v);
        let wishes = match purposes {
            None | Some(Value::Null) => {
                // A record without purposes acts as a tombstone.
                {
                    let id = self.id(subject.as_str());
                    self.forget_consent(&id);
                }
                return Ok(applied);
            }
            Some(Value::Object(m)) => {
                let mut w = Wishes::default();
                for (name, granted) in m {
                    let Some(b) = granted.as_bool() else {
                        self.deny_subjects(&subjects);
                        return Err(RecordError::BadPurposes);
                    };
                    match self.purposes.iter().position(|p| &**p == name.as_str()) {
                        Some(i) if b => w.granted |= 1 << i,
                        Some(i) => w.withdrawn |= 1 << i,
                        None => applied.unknown_purposes += 1,
                    }
                }
                w
            }
            Some(_) => {
                self.deny_subjects(&subjects);
                return Err(RecordError::BadPurposes);
            }
        };
        let id = self.id(subject.as_str());
        if !self.is_erased_id(&id) {
            self.subjects.insert(&id, wishes);
        }
        Ok(applied)
    }

    /// Applies one erasure-topic record. Erasure is permanent: a tombstone on
    /// the erasure topic does not bring a subject back. Where the key and the
    /// body disagree, the key's subject is erased (compaction keeps records
    /// by key) and the body's subjects lose every consent.
    ///
    /// # Errors
    /// What is wrong with a malformed record; before returning it, the
    /// record's key (if any) is erased.
    pub fn apply_erasure(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Result<Applied, RecordError> {
        let Some(bytes) = value else {
            return Ok(Applied::default());
        };
        let key_subject = key.and_then(canonical_subject_str);
        let erase_key = |s: &mut MemoryState| {
            let mut applied = Applied::default();
            if let Some(k) = &key_subject {
                if s.erase(k) {
                    applied.newly_erased.push(k.clone());
                }
            }
            applied
        };
        let parsed = match parse_record(bytes) {
            Ok(p) => p,
            Err(e) => {
                erase_key(self);
                return Err(e);
            }
        };
        let subjects = Subjects::of(key, &parsed.members);
        if subjects.unusable {
            erase_key(self);
            for b in &subjects.body {
                self.deny_all(b);
            }
            return Err(RecordError::BadSubject);
        }
        let mut applied = match &subjects.key {
            Some(_) => {
                let mut a = erase_key(self);
                a.mismatch = subjects.mismatch();
                if a.mismatch {
                    for b in &subjects.body {
                        if Some(b) != subjects.key.as_ref() {
                            self.deny_all(b);
                        }
                    }
                }
                a
            }
            None if subjects.body.is_empty() => return Err(RecordError::NoSubject),
            None => {
                // No key (an NDJSON file): every subject the body names.
                let mut a = Applied {
                    mismatch: subjects.mismatch(),
                    ..Applied::default()
                };
                for b in &subjects.body {
                    if self.erase(b) {
                        a.newly_erased.push(b.clone());
                    }
                }
                a
            }
        };
        applied.duplicate_keys = parsed.duplicate_keys;
        Ok(applied)
    }

    fn deny_key(&mut self, key: Option<&str>) {
        if let Some(k) = key.and_then(canonical_subject_str) {
            self.deny_all(&k);
        }
    }

    fn deny_subjects(&mut self, subjects: &Subjects) {
        let all: Vec<String> = subjects.all().cloned().collect();
        for s in all {
            self.deny_all(&s);
        }
    }

    /// The most protective reading of an unreadable consent record: consent
    /// withdrawn and objection raised for every purpose.
    pub fn deny_all(&mut self, subject: &str) {
        let id = self.id(subject);
        if self.is_erased_id(&id) {
            return;
        }
        self.subjects.insert(
            &id,
            Wishes {
                granted: 0,
                withdrawn: u64::MAX,
            },
        );
    }

    /// Erases a subject (its consent record goes too); true when it was not
    /// erased before.
    pub fn erase(&mut self, subject: &str) -> bool {
        let id = self.id(subject);
        if self.subjects.insert(&id, ERASED) == Some(ERASED) {
            return false;
        }
        self.erased += 1;
        true
    }

    pub fn consent_subjects(&self) -> usize {
        self.subjects.len() - self.erased
    }

    pub fn erased_subjects(&self) -> usize {
        self.erased
    }
}

impl SubjectState for MemoryState {
    fn is_erased(&self, subject: &str) -> bool {
        self.is_erased_id(&self.id(subject))
    }

    fn consent(&self, subject: &str, purpose: usize) -> Option<bool> {
        // An erased subject has no consent record left.
        let w = self
            .subjects
            .get(&self.id(subject))
            .filter(|w| *w != ERASED)?;
        let bit = 1u64.checked_shl(purpose as u32).unwrap_or(0);
        if w.withdrawn & bit != 0 {
            Some(false)
        } else if w.granted & bit != 0 {
            Some(true)
        } else {
            None
        }
    }
}

pub mod table;

#[cfg(test)]
mod tests;
