//! The data subject's wishes: consent, objection and erasure (SPEC §4).
//!
//! The engine asks a [`SubjectState`]; this module holds the in-memory
//! implementation fed from the compacted consent and erasure topics (or, for
//! `custos apply`, from NDJSON files). It parses records but does no I/O.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// What the engine needs to know about a subject at processing time.
pub trait SubjectState {
    /// True once an erasure request for the subject has been read.
    fn is_erased(&self, subject: &str) -> bool;
    /// `Some(true)`: consent granted for the purpose; `Some(false)`: consent
    /// withdrawn or objection; `None`: no record (no consent, no objection).
    fn consent(&self, subject: &str, purpose: &str) -> Option<bool>;
}

/// Consent and erasure state held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    consent: HashMap<Box<str>, Vec<(Box<str>, bool)>>,
    erased: HashSet<Box<str>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record has no `subject` (a string or number)")]
    NoSubject,
    #[error("`purposes` must map purpose names to true or false")]
    BadPurposes,
}

/// The subject id as text: strings as they are, numbers as their JSON text.
pub fn subject_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one consent-topic record. `key` is the record key (the subject);
    /// `value` `None` is a tombstone. Later records replace earlier ones.
    ///
    /// # Errors
    /// Returns what is wrong with a malformed record; the state is unchanged.
    pub fn apply_consent(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let Some(bytes) = value else {
            let subject = key.ok_or(RecordError::NoSubject)?;
            self.consent.remove(subject);
            return Ok(());
        };
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
        let subject = v
            .get("subject")
            .and_then(subject_text)
            .or_else(|| key.map(str::to_string))
            .ok_or(RecordError::NoSubject)?;
        match v.get("purposes") {
            None | Some(Value::Null) => {
                // A record without purposes acts as a tombstone.
                self.consent.remove(subject.as_str());
                Ok(())
            }
            Some(Value::Object(m)) => {
                let mut entries = Vec::with_capacity(m.len());
                for (p, granted) in m {
                    let b = granted.as_bool().ok_or(RecordError::BadPurposes)?;
                    entries.push((p.as_str().into(), b));
                }
                self.consent.insert(subject.into(), entries);
                Ok(())
            }
            Some(_) => Err(RecordError::BadPurposes),
        }
    }

    /// Applies one erasure-topic record. Erasure is permanent: a tombstone on
    /// the erasure topic does not bring a subject back.
    ///
    /// # Errors
    /// Returns what is wrong with a malformed record.
    pub fn apply_erasure(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Result<Option<String>, RecordError> {
        let Some(bytes) = value else {
            return Ok(None);
        };
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
        let subject = v
            .get("subject")
            .and_then(subject_text)
            .or_else(|| key.map(str::to_string))
            .ok_or(RecordError::NoSubject)?;
        let new = self.erased.insert(subject.as_str().into());
        // Nothing about an erased subject is kept: its consent record goes too.
        self.consent.remove(subject.as_str());
        Ok(new.then_some(subject))
    }

    /// The most protective reading of an unreadable consent record: consent
    /// withdrawn and objection raised for every purpose.
    pub fn deny_all(&mut self, subject: &str) {
        self.consent
            .insert(subject.into(), vec![("*".into(), false)]);
    }

    /// The most protective reading of an unreadable erasure record: erase.
    pub fn erase(&mut self, subject: &str) -> bool {
        self.consent.remove(subject);
        self.erased.insert(subject.into())
    }

    pub fn consent_subjects(&self) -> usize {
        self.consent.len()
    }

    pub fn erased_subjects(&self) -> usize {
        self.erased.len()
    }
}

impl SubjectState for MemoryState {
    fn is_erased(&self, subject: &str) -> bool {
        self.erased.contains(subject)
    }

    fn consent(&self, subject: &str, purpose: &str) -> Option<bool> {
        let entries = self.consent.get(subject)?;
        entries
            .iter()
            .find(|(p, _)| &**p == purpose)
            .or_else(|| entries.iter().find(|(p, _)| &**p == "*"))
            .map(|(_, b)| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_lifecycle() {
        let mut s = MemoryState::new();
        s.apply_consent(
            None,
            Some(br#"{"subject":"c-1","purposes":{"marketing":true,"analytics":false}}"#),
        )
        .unwrap();
        assert_eq!(s.consent("c-1", "marketing"), Some(true));
        assert_eq!(s.consent("c-1", "analytics"), Some(false));
        assert_eq!(s.consent("c-1", "support"), None);
        // A later record replaces the earlier one whole.
        s.apply_consent(
            None,
            Some(br#"{"subject":"c-1","purposes":{"analytics":true}}"#),
        )
        .unwrap();
        assert_eq!(s.consent("c-1", "marketing"), None);
        // Tombstone: back to defaults.
        s.apply_consent(Some("c-1"), None).unwrap();
        assert_eq!(s.consent("c-1", "analytics"), None);
        assert_eq!(s.consent_subjects(), 0);
    }

    #[test]
    fn numeric_subjects_and_errors() {
        let mut s = MemoryState::new();
        s.apply_consent(None, Some(br#"{"subject":42,"purposes":{"m":true}}"#))
            .unwrap();
        assert_eq!(s.consent("42", "m"), Some(true));
        assert!(s.apply_consent(None, Some(b"{")).is_err());
        assert_eq!(
            s.apply_consent(None, Some(br#"{"purposes":{}}"#)),
            Err(RecordError::NoSubject)
        );
        assert_eq!(
            s.apply_consent(None, Some(br#"{"subject":"x","purposes":{"m":"yes"}}"#)),
            Err(RecordError::BadPurposes)
        );
    }

    #[test]
    fn deny_all_withdraws_and_objects_everywhere() {
        let mut s = MemoryState::new();
        s.apply_consent(None, Some(br#"{"subject":"c-3","purposes":{"m":true}}"#))
            .unwrap();
        s.deny_all("c-3");
        assert_eq!(s.consent("c-3", "m"), Some(false));
        assert_eq!(s.consent("c-3", "anything"), Some(false));
        assert!(s.erase("c-3"));
        assert!(s.is_erased("c-3"));
    }

    #[test]
    fn erasure_is_permanent() {
        let mut s = MemoryState::new();
        s.apply_consent(None, Some(br#"{"subject":"c-2","purposes":{"m":true}}"#))
            .unwrap();
        assert_eq!(
            s.apply_erasure(
                None,
                Some(br#"{"subject":"c-2","requested_at":"2026-11-01T00:00:00Z"}"#)
            ),
            Ok(Some("c-2".into()))
        );
        assert!(s.is_erased("c-2"));
        assert_eq!(s.consent("c-2", "m"), None);
        s.apply_erasure(Some("c-2"), None).unwrap();
        assert!(s.is_erased("c-2"));
    }
}
