//! The `encrypt` action: AES-256-GCM under per-subject data keys, the keys
//! topic's records that hold those keys wrapped, and the ring that holds
//! them in memory. `docs/encryption.md` is the user's page; the formats:
//!
//! **Token** (what an encrypted value becomes):
//! `"enc:v1:" + base64(key id (16) ‖ nonce (12) ‖ ciphertext ‖ tag (16))`,
//! standard alphabet with padding. The plaintext is the value's JSON text (a
//! string with its quotes), so decryption gives back the type; a span found
//! inside scanned text is encrypted as a JSON string too. The associated
//! data binds a token to its event, its purpose and its place in it
//! ([`aad`]): the output's `custos-source` header (`topic/partition/offset`
//! of the input), the purpose (`custos-purpose`), and the output path, each
//! step typed (member and its name, array element, record key, header and
//! its name). A token moved to another field, purpose or event does not
//! decrypt.
//!
//! **Data key**: 32 random bytes per (KEK name, subject); its id is the
//! first 16 bytes of `SHA-256("custos key id v1" ‖ key)`.
//!
//! **Keys topic record**: key `<kek name>/<subject hash>/<key id>` (hex),
//! where the subject hash is the first 16 bytes of HMAC-SHA256 under a key
//! derived from the audit key, over `kek name ‖ 0 ‖ subject id`; value
//! `{"v":1,"kek":"<fingerprint>","wrapped":"<base64(nonce ‖ AES-256-GCM(KEK, data key))>","created_at":"…"}`
//! with the record key as associated data (a wrapped key moved to another
//! subject does not unwrap). A tombstone destroys the key. The KEK is
//! `HMAC-SHA256(secret, "custos kek v1")` of the named secret; its
//! fingerprint the first 8 bytes of SHA-256 of the KEK, in hex.
//!
//! **Agreement**: the first record of a (KEK, subject hash) in the keys
//! topic's partition wins; each candidate has its own record key, so
//! compaction keeps the winner. See [`KeyRing::apply`].

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::AuditKey;

type HmacSha256 = Hmac<Sha256>;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "enc:v1:";
/// What `custos decrypt` writes for a value whose key is gone.
pub const KEY_DESTROYED: &str = "[key destroyed]";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A data key's id.
pub type KeyId = [u8; ID_LEN];
/// A subject as the keys topic names it (per KEK).
pub type SubjectHash = [u8; 16];

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The operating system's generator does not fail on the systems custos
    // runs on; if it did, a zero nonce or key would be a silent disaster.
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b
}

/// One subject's data key, ready to encrypt and decrypt.
#[derive(Clone)]
pub struct DataKey {
    id: KeyId,
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", hex::encode(self.id))
    }
}

/// The id of a data key (it names the key in tokens and on the keys topic
/// without saying anything about its bytes).
pub fn key_id(key: &[u8; 32]) -> KeyId {
    let mut h = Sha256::new();
    h.update(b"custos key id v1");
    h.update(key);
    let d = h.finalize();
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&d[..ID_LEN]);
    id
}

impl DataKey {
    pub fn new(key: &[u8; 32]) -> DataKey {
        DataKey {
            id: key_id(key),
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Encrypts `plaintext` (a value's JSON text) into a token.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = random();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut raw = Vec::with_capacity(ID_LEN + NONCE_LEN + ct.len());
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        let mut out = String::with_capacity(TOKEN_PREFIX.len() + raw.len() * 4 / 3 + 4);
        out.push_str(TOKEN_PREFIX);
        B64.encode_string(&raw, &mut out);
        out
    }

    /// Decrypts a token made by [`DataKey::seal`] with the same `aad`.
    ///
    /// # Errors
    /// A token that is not one, another key's, or one whose associated data
    /// or bytes were changed.
    pub fn open(&self, aad: &[u8], token: &str) -> Result<Vec<u8>, OpenError> {
        let raw = token_bytes(token).ok_or(OpenError::NotAToken)?;
        if raw[..ID_LEN] != self.id {
            return Err(OpenError::OtherKey);
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&raw[ID_LEN..ID_LEN + NONCE_LEN]),
                Payload {
                    msg: &raw[ID_LEN + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| OpenError::Tampered)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not an enc:v1 token")]
    NotAToken,
    #[error("the token was made with another key")]
    OtherKey,
    #[error(
        "the token does not decrypt here: it was changed, or moved from another field or event"
    )]
    Tampered,
    #[error("the token's key is on the keys topic but does not unwrap with these KEKs")]
    Unreadable,
}

fn token_bytes(token: &str) -> Option<Vec<u8>> {
    let b64 = token.strip_prefix(TOKEN_PREFIX)?;
    let raw = B64.decode(b64).ok()?;
    (raw.len() >= ID_LEN + NONCE_LEN + TAG_LEN).then_some(raw)
}

/// The id of the key a token was made with.
pub fn token_key_id(token: &str) -> Option<KeyId> {
    let raw = token_bytes(token)?;
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&raw[..ID_LEN]);
    Some(id)
}

/// One step of a value's place in an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// An object member, by name.
    Member(&'a [u8]),
    /// An array element (elements are not told apart by index).
    Element,
    /// The record key.
    Key,
    /// A record header, by name.
    Header(&'a [u8]),
}

/// The associated data of a token: its event (`source`, the output's
/// `custos-source`), its purpose, and its place. Every part is preceded by
/// its length (4 bytes, big-endian) and every step by its kind, so no two
/// places give the same bytes (a member may be named `$key` or `[]`).
pub fn aad<'s>(source: &str, purpose: &str, path: impl IntoIterator<Item = Seg<'s>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"custos-enc-v1");
    fn part(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    part(&mut out, source.as_bytes());
    part(&mut out, purpose.as_bytes());
    for seg in path {
        match seg {
            Seg::Member(name) => {
                out.push(1);
                part(&mut out, name);
            }
            Seg::Element => out.push(2),
            Seg::Key => out.push(3),
            Seg::Header(name) => {
                out.push(4);
                part(&mut out, name);
            }
        }
    }
    out
}

/// A key-encryption key: wraps data keys for the keys topic.
#[derive(Clone)]
pub struct Kek {
    name: String,
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({}, {})", self.name, self.fingerprint)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record key is not `<kek>/<subject hash>/<key id>`")]
    BadKey,
    #[error("the record names KEK `{0}`, which the policy does not have")]
    UnknownKek(String),
    #[error("the record is not a keys-topic record (JSON with v, kek, wrapped)")]
    BadValue,
    #[error("the record's subject is hashed under another key (fingerprint {0}): it was made with another audit key, and erasures could not find it")]
    OtherSubjects(String),
    #[error("the data key does not unwrap under KEK `{kek}` (fingerprint {have}; the record says {record}): wrong secret, or a record not written by custos")]
    Unwrap {
        kek: String,
        have: String,
        record: String,
    },
}

impl Kek {
    /// The KEK named `name` from its secret's bytes.
    pub fn new(name: &str, secret: &[u8]) -> Kek {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        m.update(b"custos kek v1");
        let key: [u8; 32] = m.finalize().into_bytes().into();
        let fingerprint = hex::encode(&Sha256::digest(key)[..8]);
        Kek {
            name: name.to_string(),
            cipher: Aes256Gcm::new(&key.into()),
            fingerprint,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The keys-topic value holding `key` wrapped, bound to `record_key`
    /// and to `subjects`, the fingerprint of the key its subject hash is
    /// made under ([`KeyRing::subjects_fingerprint`]): a record copied to
    /// another record key, or relabelled as another deployment's, does not
    /// unwrap.
    pub fn wrap(
        &self,
        record_key: &str,
        key: &[u8; 32],
        created_at: &str,
        subjects: &str,
    ) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key,
                    aad: &wrap_aad(record_key, subjects),
                },
            )
            .expect("AES-GCM encrypts 32 bytes");
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&ct);
        serde_json::json!({
            "v": 1,
            "kek": self.fingerprint,
            "subjects": subjects,
            "wrapped": B64.encode(raw),
            "created_at": created_at,
        })
        .to_string()
        .into_bytes()
    }

    /// The data key a keys-topic value holds.
    ///
    /// # Errors
    /// Not such a value, or one that does not unwrap under this KEK.
    pub fn unwrap(&self, record_key: &str, value: &[u8]) -> Result<[u8; 32], RecordError> {
        let v: Value = serde_json::from_slice(value).map_err(|_| RecordError::BadValue)?;
        let (Some(1), Some(fp), Some(subjects), Some(wrapped)) = (
            v.get("v").and_then(Value::as_u64),
            v.get("kek").and_then(Value::as_str),
            v.get("subjects").and_then(Value::as_str),
            v.get("wrapped").and_then(Value::as_str),
        ) else {
            return Err(RecordError::BadValue);
        };
        let unwrap_err = || RecordError::Unwrap {
            kek: self.name.clone(),
            have: self.fingerprint.clone(),
            record: fp.chars().take(16).collect(),
        };
        let raw = B64.decode(wrapped).map_err(|_| RecordError::BadValue)?;
        if raw.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(RecordError::BadValue);
        }
        let key = self
            .cipher
            .decrypt(
                Nonce::from_slice(&raw[..NONCE_LEN]),
                Payload {
                    msg: &raw[NONCE_LEN..],
                    aad: &wrap_aad(record_key, subjects),
                },
            )
            .map_err(|_| unwrap_err())?;
        key.try_into().map_err(|_| unwrap_err())
    }
}

/// Associated data of a wrapped data key: its record key and the
/// subjects fingerprint, length-prefixed.
fn wrap_aad(record_key: &str, subjects: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + record_key.len() + subjects.len());
    for part in [record_key, subjects] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Where a (KEK name, subject hash) lives in a [`KeyRing`].
fn slot(kek: &str, hash: &SubjectHash) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(kek.as_bytes());
    h.update([0]);
    h.update(hash);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A keys-topic record key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub kek: String,
    pub subject: SubjectHash,
    pub id: KeyId,
}

impl RecordKey {
    /// # Errors
    /// Not `<kek>/<32 hex>/<32 hex>`.
    pub fn parse(key: &[u8]) -> Result<RecordKey, RecordError> {
        let s = std::str::from_utf8(key).map_err(|_| RecordError::BadKey)?;
        let mut parts = s.rsplitn(3, '/');
        let (Some(id), Some(subject), Some(kek)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(RecordError::BadKey);
        };
        let mut out = RecordKey {
            kek: kek.to_string(),
            subject: [0; 16],
            id: [0; 16],
        };
        hex::decode_to_slice(subject, &mut out.subject).map_err(|_| RecordError::BadKey)?;
        hex::decode_to_slice(id, &mut out.id).map_err(|_| RecordError::BadKey)?;
        // Only the form custos writes (lower-case hex, nothing around it):
        // compaction goes by the exact bytes, so a look-alike must not pass
        // for the record it imitates.
        if kek.is_empty() || out.render() != s {
            return Err(RecordError::BadKey);
        }
        Ok(out)
    }

    fn slot(&self) -> [u8; 16] {
        slot(&self.kek, &self.subject)
    }

    pub fn render(&self) -> String {
        format!(
            "{}/{}/{}",
            self.kek,
            hex::encode(self.subject),
            hex::encode(self.id)
        )
    }
}

/// What reading one keys-topic record did to the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The first key of its subject: the one every worker uses.
    Won,
    /// A later candidate for a subject that already has a key (two workers
    /// raced): never used; its writer tombstones it.
    Lost,
    /// A tombstone: the key is destroyed.
    Destroyed,
    /// A live key of a subject this ring saw erased (a candidate that raced
    /// the erasure, or a rotation that re-wrote a shredded key): the reader
    /// tombstones it.
    Erased,
}

/// The data keys of every subject seen, in memory: the winning key per
/// (KEK, subject hash), and the ids of the candidates that lost.
///
/// 45 bytes per subject and KEK (96 bits of the slot, the key, a byte of
/// fingerprint) in a [`crate::state::table::SubjectTable`], 81 to 93% full
/// as keys are added (50% at worst after removals): `cargo bench --bench
/// state` measures it.
pub struct KeyRing {
    keks: Vec<Kek>,
    subjects: HmacSha256,
    keys: crate::state::table::SubjectTable<[u8; 32]>,
    losers: HashMap<SubjectHash, Vec<KeyId>>,
    /// Winners this ring could not unwrap (a KEK it does not have, e.g. in
    /// the middle of a rotation): they hold their subject's place, so every
    /// worker still agrees on which key is the subject's, and nothing is
    /// encrypted for the subject here until the record unwraps.
    unreadable: HashMap<SubjectHash, KeyId>,
    /// Subject hashes (per KEK name) of subjects erased while this ring ran.
    erased: std::collections::HashSet<SubjectHash>,
    /// KEK names seen on the topic (a KEK the policy no longer names still
    /// has keys an erasure must find).
    seen_keks: std::collections::BTreeSet<String>,
    subjects_fp: String,
    /// Records whose subjects are hashed under another key.
    pub foreign_subjects: u64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keks", &self.keks)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring for these KEKs; subjects are hashed under a key derived from
    /// the audit key (stable when a KEK is rotated).
    pub fn new(keks: Vec<Kek>, audit: &AuditKey) -> KeyRing {
        let derived = audit.derive("custos data-key subjects v1");
        KeyRing {
            keks,
            subjects: <HmacSha256 as Mac>::new_from_slice(&derived)
                .expect("HMAC takes keys of any length"),
            keys: crate::state::table::SubjectTable::default(),
            losers: HashMap::new(),
            unreadable: HashMap::new(),
            erased: std::collections::HashSet::new(),
            seen_keks: std::collections::BTreeSet::new(),
            subjects_fp: hex::encode(&Sha256::digest(derived)[..8]),
            foreign_subjects: 0,
        }
    }

    /// Names the key subject hashes are made under (derived from the audit
    /// key): a record made under another one cannot be found by an erasure.
    pub fn subjects_fingerprint(&self) -> &str {
        &self.subjects_fp
    }

    pub fn kek(&self, name: &str) -> Option<&Kek> {
        self.keks.iter().find(|k| k.name == name)
    }

    pub fn keks(&self) -> &[Kek] {
        &self.keks
    }

    /// The subject as the keys topic names it under KEK `kek`.
    pub fn subject_hash(&self, kek: &str, subject: &str) -> SubjectHash {
        let mut m = self.subjects.clone();
        m.update(kek.as_bytes());
        m.update(&[0]);
        m.update(subject.as_bytes());
        let d = m.finalize().into_bytes();
        let mut h = [0u8; 16];
        h.copy_from_slice(&d[..16]);
        h
    }

    /// The agreed key of a subject under KEK `kek`, if any (`hash`: its
    /// [`KeyRing::subject_hash`]).
    pub fn get(&self, kek: &str, hash: &SubjectHash) -> Option<DataKey> {
        self.keys.get(&slot(kek, hash)).as_ref().map(DataKey::new)
    }

    /// True when the subject's key is on the topic but does not unwrap here.
    pub fn is_unreadable(&self, kek: &str, hash: &SubjectHash) -> bool {
        self.unreadable.contains_key(&slot(kek, hash))
    }

    /// Number of subjects (per KEK) with a key.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A new candidate key for a subject: its record key and value for the
    /// keys topic. It is not in the ring until its record is read back.
    ///
    /// # Panics
    /// When `kek` is not one of the ring's (the plan only names those).
    pub fn candidate(&self, kek: &str, hash: SubjectHash, created_at: &str) -> (String, Vec<u8>) {
        let k = self.kek(kek).expect("encrypt names a KEK of the policy");
        let key: [u8; 32] = random();
        let rk = RecordKey {
            kek: kek.to_string(),
            subject: hash,
            id: key_id(&key),
        }
        .render();
        let value = k.wrap(&rk, &key, created_at, &self.subjects_fp);
        (rk, value)
    }

    /// Reads one keys-topic record, in topic order. The first key of a
    /// (KEK, subject) wins and stays; later ones are recorded as losers (so
    /// an erasure can tombstone them too); a tombstone of the winner
    /// destroys the subject's key.
    ///
    /// # Errors
    /// A record that is not custos's, names another KEK, or does not unwrap:
    /// it is ignored (the reader logs its coordinates).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<Applied, RecordError> {
        let rk = RecordKey::parse(key)?;
        // Slots are per KEK name and subject hash: a tombstone or record
        // under another KEK name touches nothing of this one's.
        let at = rk.slot();
        if !self.seen_keks.contains(&rk.kek) {
            self.seen_keks.insert(rk.kek.clone());
        }
        let Some(value) = value else {
            if self.keys.get(&at).as_ref().map(key_id) == Some(rk.id) {
                self.keys.remove(&at);
            }
            if self.unreadable.get(&at) == Some(&rk.id) {
                self.unreadable.remove(&at);
            }
            if let Some(l) = self.losers.get_mut(&at) {
                l.retain(|id| *id != rk.id);
                if l.is_empty() {
                    self.losers.remove(&at);
                }
            }
            return Ok(Applied::Destroyed);
        };
        let fp = serde_json::from_slice::<Value>(value)
            .ok()
            .and_then(|v| {
                v.get("subjects")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .ok_or(RecordError::BadValue)?;
        if fp != self.subjects_fp {
            self.foreign_subjects += 1;
            return Err(RecordError::OtherSubjects(fp.chars().take(16).collect()));
        }
        if self.erased.contains(&at) {
            return Ok(Applied::Erased);
        }
        let text = std::str::from_utf8(key).map_err(|_| RecordError::BadKey)?;
        let unwrapped = match self.kek(&rk.kek) {
            Some(kek) => kek.unwrap(text, value),
            None => Err(RecordError::UnknownKek(rk.kek.clone())),
        };
        let again = self.keys.get(&at).as_ref().map(key_id) == Some(rk.id)
            || self.unreadable.get(&at) == Some(&rk.id);
        let taken = self.keys.contains_key(&at) || self.unreadable.contains_key(&at);
        match unwrapped {
            // Forged: the key is not the one its record key names.
            Ok(d) if key_id(&d) != rk.id => Err(RecordError::BadKey),
            Ok(d) => {
                if self.unreadable.get(&at) == Some(&rk.id) {
                    // The winner, re-wrapped under a KEK this ring has.
                    self.unreadable.remove(&at);
                    self.keys.insert(&at, d);
                    return Ok(Applied::Won);
                }
                if again {
                    return Ok(Applied::Won);
                }
                if taken {
                    self.lose(&rk);
                    return Ok(Applied::Lost);
                }
                self.keys.insert(&at, d);
                Ok(Applied::Won)
            }
            // Unreadable here, but it holds its place in the agreement.
            Err(e @ (RecordError::Unwrap { .. } | RecordError::UnknownKek(_))) => {
                if !taken {
                    self.unreadable.insert(at, rk.id);
                } else if !again {
                    self.lose(&rk);
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn lose(&mut self, rk: &RecordKey) {
        let l = self.losers.entry(rk.slot()).or_default();
        if !l.contains(&rk.id) {
            l.push(rk.id);
        }
    }

    /// Every KEK name: the policy's and those seen on the topic.
    fn kek_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.keks.iter().map(|k| k.name.clone()).collect();
        for n in &self.seen_keks {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }

    /// Every keys-topic record key a subject has under every KEK (winner,
    /// losers, unreadable ones): what an erasure tombstones.
    pub fn records_of(&self, subject: &str) -> Vec<String> {
        let mut out = Vec::new();
        for kek in self.kek_names() {
            let hash = self.subject_hash(&kek, subject);
            let at = slot(&kek, &hash);
            let ids = self
                .keys
                .get(&at)
                .as_ref()
                .map(key_id)
                .into_iter()
                .chain(self.unreadable.get(&at).copied())
                .chain(self.losers.get(&at).into_iter().flatten().copied());
            for id in ids {
                out.push(
                    RecordKey {
                        kek: kek.clone(),
                        subject: hash,
                        id,
                    }
                    .render(),
                );
            }
        }
        out
    }

    /// Drops an erased subject's keys from memory (its tombstones are on
    /// their way) and remembers it: a key of it read later is tombstoned too.
    pub fn forget(&mut self, subject: &str) {
        for kek in self.kek_names() {
            let at = slot(&kek, &self.subject_hash(&kek, subject));
            self.keys.remove(&at);
            self.losers.remove(&at);
            self.unreadable.remove(&at);
            self.erased.insert(at);
        }
    }
}

/// The keys `custos decrypt` holds: every keys-topic record by key id.
#[derive(Default)]
pub struct KeyIndex {
    /// Per key id, the state of every keys-topic record naming it (by its
    /// exact record key): a record under another KEK name or subject hash
    /// is another record, and says nothing of this one.
    ids: HashMap<KeyId, Vec<(String, KeyState)>>,
}

#[derive(Debug, Clone)]
enum KeyState {
    Live(Box<DataKey>),
    /// A tombstone was read: destroyed for certain, and stays so (a value
    /// written again under this record key after its tombstone does not
    /// bring the key back).
    Destroyed,
    /// On the topic, but does not unwrap here (another KEK, another
    /// secret): its tokens fail, they are not destroyed.
    Unreadable,
}

/// What became of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The value's JSON text.
    Plain(Vec<u8>),
    /// A tombstone of the key was read: destroyed (crypto-shredded).
    KeyDestroyed,
    /// The key is not on the keys topic: destroyed and compacted away, or
    /// the token is from another keys topic.
    KeyMissing,
    Failed(OpenError),
}

impl KeyIndex {
    /// Reads one keys-topic record (tombstones included), in topic order.
    ///
    /// # Errors
    /// As [`Kek::unwrap`]; the record is skipped.
    pub fn apply(
        &mut self,
        keks: &[Kek],
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let rk = RecordKey::parse(key)?;
        let text = std::str::from_utf8(key).map_err(|_| RecordError::BadKey)?;
        let records = self.ids.entry(rk.id).or_default();
        let at = records.iter().position(|(k, _)| k == text);
        let Some(value) = value else {
            match at {
                Some(i) => records[i].1 = KeyState::Destroyed,
                None => records.push((text.to_string(), KeyState::Destroyed)),
            }
            return Ok(());
        };
        let state = at.map(|i| &records[i].1);
        if matches!(state, Some(KeyState::Destroyed)) {
            return Ok(());
        }
        let data = match keks.iter().find(|k| k.name == rk.kek) {
            Some(kek) => kek.unwrap(text, value),
            None => Err(RecordError::UnknownKek(rk.kek.clone())),
        };
        let next = match data {
            Ok(d) if key_id(&d) == rk.id => KeyState::Live(Box::new(DataKey::new(&d))),
            Ok(_) => return Err(RecordError::BadKey),
            // A key already read stays known when its record is re-wrapped
            // under a KEK this reader lacks.
            Err(e) => {
                if at.is_none() {
                    records.push((text.to_string(), KeyState::Unreadable));
                }
                return Err(e);
            }
        };
        match at {
            Some(i) => records[i].1 = next,
            None => records.push((text.to_string(), next)),
        }
        Ok(())
    }

    /// Number of keys that open tokens.
    pub fn len(&self) -> usize {
        self.ids
            .values()
            .filter(|r| r.iter().any(|(_, s)| matches!(s, KeyState::Live(_))))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decrypts one token found at `aad`. Any live record of the token's
    /// key id opens it; failing that, an unreadable one makes it fail, and
    /// only a key whose every record is tombstoned is destroyed.
    pub fn open(&self, aad: &[u8], token: &str) -> Opened {
        let Some(id) = token_key_id(token) else {
            return Opened::Failed(OpenError::NotAToken);
        };
        let records = self.ids.get(&id).map(Vec::as_slice).unwrap_or_default();
        let live = records.iter().find_map(|(_, s)| match s {
            KeyState::Live(k) => Some(k),
            _ => None,
        });
        match live {
            Some(k) => match k.open(aad, token) {
                Ok(p) => Opened::Plain(p),
                Err(e) => Opened::Failed(e),
            },
            None if records
                .iter()
                .any(|(_, s)| matches!(s, KeyState::Unreadable)) =>
            {
                Opened::Failed(OpenError::Unreadable)
            }
            None if !records.is_empty() => Opened::KeyDestroyed,
            None => Opened::KeyMissing,
        }
    }
}

/// No data key could be had for a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no data key is available")]
pub struct Unavailable;

/// Where the engine gets a subject's data key from (see
/// [`crate::state::SubjectState::data_key`]).
pub trait KeySource {
    /// The subject's agreed key under `kek`, created when it has none.
    ///
    /// # Errors
    /// None could be had (the keys topic is unreachable, the worker stops).
    fn data_key(&self, kek: &str, subject: &str) -> Result<DataKey, Unavailable>;
}

/// Keys for one process with nobody to agree with (`custos apply`): made on
/// first use; the records they would have on the keys topic are kept so
/// they can be written to a file `custos decrypt` reads.
pub struct LocalKeys {
    ring: std::cell::RefCell<KeyRing>,
    /// New records (keys, and tombstones of shredded ones) since the last take.
    created: std::cell::RefCell<Vec<(String, Option<Vec<u8>>)>>,
    created_at: String,
}

impl LocalKeys {
    pub fn new(ring: KeyRing, created_at: String) -> LocalKeys {
        LocalKeys {
            ring: std::cell::RefCell::new(ring),
            created: std::cell::RefCell::new(Vec::new()),
            created_at,
        }
    }

    /// Reads a keys record (from an earlier run's file).
    ///
    /// # Errors
    /// As [`KeyRing::apply`].
    pub fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<Applied, RecordError> {
        self.ring.borrow_mut().apply(key, value)
    }

    /// The keys records (new keys, tombstones) made since the last call.
    pub fn take_created(&self) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut *self.created.borrow_mut())
    }

    /// Crypto-shredding: tombstones every key of these subjects.
    pub fn shred(&self, subjects: &[String]) {
        for s in subjects {
            let records = self.ring.borrow().records_of(s);
            for r in records {
                let _ = self.ring.borrow_mut().apply(r.as_bytes(), None);
                self.created.borrow_mut().push((r, None));
            }
            self.ring.borrow_mut().forget(s);
        }
    }
}

impl KeySource for LocalKeys {
    fn data_key(&self, kek: &str, subject: &str) -> Result<DataKey, Unavailable> {
        let hash = self.ring.borrow().subject_hash(kek, subject);
        if let Some(k) = self.ring.borrow().get(kek, &hash) {
            return Ok(k);
        }
        if self.ring.borrow().kek(kek).is_none() {
            return Err(Unavailable);
        }
        let (rk, value) = self.ring.borrow().candidate(kek, hash, &self.created_at);
        self.ring
            .borrow_mut()
            .apply(rk.as_bytes(), Some(&value))
            .map_err(|_| Unavailable)?;
        self.created.borrow_mut().push((rk, Some(value)));
        self.ring.borrow().get(kek, &hash).ok_or(Unavailable)
    }
}

/// The outcome counts of one [`decrypt_value`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecryptCounts {
    pub decrypted: u64,
    /// Tokens whose key's tombstone was read.
    pub destroyed: u64,
    /// Tokens whose key is not on the keys topic (destroyed and compacted
    /// away, or another keys topic's): also written as [`KEY_DESTROYED`].
    pub missing: u64,
    pub failed: u64,
}

/// Where an output came from: its `custos-source` and `custos-purpose`
/// headers (every token is bound to both).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    pub purpose: &'a str,
}

/// Decrypts every token in a governed value in place (the library function
/// behind `custos decrypt`): a string that is one token becomes the value
/// it encrypted; tokens inside text (spans the detectors found) become the
/// text they encrypted. A token whose key is destroyed becomes
/// [`KEY_DESTROYED`]; one that does not decrypt is left as it is and counted.
pub fn decrypt_value(
    keys: &KeyIndex,
    origin: Origin<'_>,
    value: &mut Value,
    counts: &mut DecryptCounts,
) {
    let mut path: Vec<Option<Vec<u8>>> = Vec::new();
    walk_decrypt(keys, origin, value, &mut path, counts);
}

/// Decrypts the record key's or a header's text (`place`: [`Seg::Key`] or
/// [`Seg::Header`]).
pub fn decrypt_text(
    keys: &KeyIndex,
    origin: Origin<'_>,
    place: Seg<'_>,
    text: &str,
    counts: &mut DecryptCounts,
) -> String {
    let aad = aad(origin.source, origin.purpose, [place]);
    match open_text(keys, &aad, text, counts) {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => text.to_string(),
    }
}

/// `path`: member names, `None` for an array element.
fn walk_decrypt(
    keys: &KeyIndex,
    origin: Origin<'_>,
    value: &mut Value,
    path: &mut Vec<Option<Vec<u8>>>,
    counts: &mut DecryptCounts,
) {
    match value {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                path.push(Some(k.as_bytes().to_vec()));
                walk_decrypt(keys, origin, v, path, counts);
                path.pop();
            }
        }
        Value::Array(a) => {
            path.push(None);
            for v in a {
                walk_decrypt(keys, origin, v, path, counts);
            }
            path.pop();
        }
        Value::String(s) if s.contains(TOKEN_PREFIX) => {
            let segs = path.iter().map(|p| match p {
                Some(name) => Seg::Member(name),
                None => Seg::Element,
            });
            let aad = aad(origin.source, origin.purpose, segs);
            if let Some(v) = open_text(keys, &aad, s, counts) {
                *value = v;
                // A field encrypted whole whose spans were encrypted first:
                // the decrypted text holds the span tokens.
                walk_decrypt(keys, origin, value, path, counts);
            }
        }
        _ => {}
    }
}

/// A string holding tokens, decrypted: `Some(value)` when anything changed.
fn open_text(keys: &KeyIndex, aad: &[u8], s: &str, counts: &mut DecryptCounts) -> Option<Value> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let count = |o: &Opened, counts: &mut DecryptCounts| match o {
        Opened::Plain(_) => counts.decrypted += 1,
        Opened::KeyDestroyed => counts.destroyed += 1,
        Opened::KeyMissing => counts.missing += 1,
        Opened::Failed(OpenError::NotAToken) => {}
        Opened::Failed(_) => counts.failed += 1,
    };
    if let Some(rest) = s.strip_prefix(TOKEN_PREFIX) {
        if rest.chars().all(is_b64) {
            let o = keys.open(aad, s);
            match o {
                Opened::Plain(p) => {
                    count(&Opened::Plain(Vec::new()), counts);
                    return Some(serde_json::from_slice(&p).unwrap_or(Value::Null));
                }
                Opened::KeyDestroyed | Opened::KeyMissing => {
                    count(&o, counts);
                    return Some(Value::String(KEY_DESTROYED.into()));
                }
                // Perhaps a token followed by text in the base64 alphabet:
                // looked for below, as inside text.
                Opened::Failed(_) => {}
            }
        }
    }
    // Tokens inside text. Where one ends is not marked: text right after it
    // may continue the base64 alphabet (`a@b.c/x`), so shorter candidates
    // are tried (a token's length is a multiple of four), up to
    // `TRAILING_TRIES` of them (bounded work on hostile text).
    const TRAILING_TRIES: usize = 16;
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find(TOKEN_PREFIX) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + TOKEN_PREFIX.len()..];
        let longest = tail.find(|c: char| !is_b64(c)).unwrap_or(tail.len());
        let mut found: Option<(usize, Opened)> = None;
        let mut end = longest - longest % 4;
        let lowest = end.saturating_sub(4 * TRAILING_TRIES).max(4);
        while end >= lowest {
            let o = keys.open(aad, &rest[at..at + TOKEN_PREFIX.len() + end]);
            let settled = !matches!(
                o,
                Opened::Failed(OpenError::NotAToken | OpenError::Tampered)
            );
            if settled || found.is_none() {
                found = Some((end, o));
            }
            if settled {
                break;
            }
            end -= 4;
        }
        let Some((end, o)) = found else {
            // Not a token: only the prefix is passed over (another may start
            // right after it, `enc:v1:enc:v1:…`).
            out.push_str(TOKEN_PREFIX);
            rest = tail;
            continue;
        };
        if matches!(o, Opened::Failed(OpenError::NotAToken)) {
            out.push_str(TOKEN_PREFIX);
            rest = tail;
            continue;
        }
        let token = &rest[at..at + TOKEN_PREFIX.len() + end];
        count(&o, counts);
        match o {
            Opened::Plain(p) => {
                changed = true;
                match serde_json::from_slice::<Value>(&p) {
                    Ok(Value::String(t)) => out.push_str(&t),
                    Ok(v) => out.push_str(&v.to_string()),
                    Err(_) => out.push_str(token),
                }
            }
            Opened::KeyDestroyed | Opened::KeyMissing => {
                changed = true;
                out.push_str(KEY_DESTROYED);
            }
            Opened::Failed(_) => out.push_str(token),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    changed.then_some(Value::String(out))
}

#[cfg(test)]
mod tests;
