//! Resolves the policy's named secrets (`keys:`) from the environment or files.
//!
//! This is the one part of policy handling that does I/O; it runs once at start
//! so that a missing secret stops the worker before any record is processed.
//! Secret bytes are never logged or printed.

use std::collections::HashMap;
use std::fmt;

use super::{KeySource, Policy};

/// Shortest key `custos run` accepts: a shorter HMAC key makes pseudonyms
/// guessable by trying keys.
pub const MIN_KEY_BYTES: usize = 16;

/// The bytes of every named secret of a policy.
#[derive(Clone, Default)]
pub struct Keys {
    keys: HashMap<String, Vec<u8>>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.keys.keys().collect();
        names.sort();
        f.debug_struct("Keys")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "key `{key}`: environment variable `{var}` is not set; export it with the secret's bytes"
    )]
    MissingEnv { key: String, var: String },
    #[error("key `{key}`: environment variable `{var}` is empty")]
    EmptyEnv { key: String, var: String },
    #[error("key `{key}`: cannot read file `{path}`: {reason}")]
    File {
        key: String,
        path: String,
        reason: String,
    },
    #[error("key `{key}`: file `{path}` is empty")]
    EmptyFile { key: String, path: String },
}

impl Keys {
    /// Keys given directly, for tests and benchmarks.
    pub fn from_pairs<I, K, V>(pairs: I) -> Keys
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        Keys {
            keys: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Keys shorter than [`MIN_KEY_BYTES`], by name, with their length.
    pub fn short(&self) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = self
            .keys
            .iter()
            .filter(|(_, v)| v.len() < MIN_KEY_BYTES)
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        out.sort();
        out
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.keys.get(name).map(Vec::as_slice)
    }

    /// Reads every key of the policy. `env` looks up an environment variable.
    ///
    /// # Errors
    /// Returns one error per key that is missing, empty or unreadable.
    pub fn resolve(
        policy: &Policy,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Keys, Vec<KeyError>> {
        let mut keys = HashMap::new();
        let mut errors = Vec::new();
        for (name, src) in &policy.keys {
            let bytes = read_secret(name, src, &env);
            match bytes {
                Ok(b) => {
                    keys.insert(name.clone(), b);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Keys { keys })
        } else {
            Err(errors)
        }
    }
}

/// Reads one secret (`name` is only for messages).
///
/// # Errors
/// The variable or file is missing, unreadable or empty.
pub fn read_secret(
    name: &str,
    src: &KeySource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, KeyError> {
    match src {
        KeySource::Env(var) => match env(var) {
            None => Err(KeyError::MissingEnv {
                key: name.to_string(),
                var: var.clone(),
            }),
            Some(v) if trim_newline(v.as_bytes()).is_empty() => Err(KeyError::EmptyEnv {
                key: name.to_string(),
                var: var.clone(),
            }),
            Some(v) => Ok(trim_newline(v.as_bytes()).to_vec()),
        },
        KeySource::File(path) => match std::fs::read(path) {
            Err(e) => Err(KeyError::File {
                key: name.to_string(),
                path: path.clone(),
                reason: e.to_string(),
            }),
            Ok(b) if trim_newline(&b).is_empty() => Err(KeyError::EmptyFile {
                key: name.to_string(),
                path: path.clone(),
            }),
            Ok(b) => Ok(trim_newline(&b).to_vec()),
        },
    }
}

/// Removes one trailing newline (`\n` or `\r\n`), as files written by editors have.
fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_removed_once() {
        assert_eq!(trim_newline(b"abc\n"), b"abc");
        assert_eq!(trim_newline(b"abc\r\n"), b"abc");
        assert_eq!(trim_newline(b"abc\n\n"), b"abc\n");
        assert_eq!(trim_newline(b"abc"), b"abc");
    }
}
