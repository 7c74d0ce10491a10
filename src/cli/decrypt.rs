//! `custos decrypt`: an authorised consumer's view of encrypted outputs.
//!
//! Reads NDJSON output lines (`{"key":…,"value":…,"headers":{…}}`, as
//! `custos apply` prints them or a consumer dumps a topic) and writes them
//! back with every `enc:v1:` token in the value, key and headers decrypted.
//! The data keys come from the keys topic (`--config`) or a keys file
//! (`--policy` + `--keys`); the KEKs that unwrap them are the policy's named
//! secrets. A token whose key was destroyed (crypto-shredded on erasure)
//! becomes `"[key destroyed]"`, never plaintext.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use super::{load_compiled, Failure};
use crate::crypto::{self, DecryptCounts, KeyIndex};

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The worker configuration: broker, keys topic (`[encryption]`) and
    /// policy (whose `keys:` hold the KEKs)
    #[arg(long, conflicts_with_all = ["policy", "keys"])]
    pub config: Option<PathBuf>,
    /// Offline: the policy file whose `keys:` hold the KEKs (with --keys)
    #[arg(long, requires = "keys")]
    pub policy: Option<PathBuf>,
    /// Offline: NDJSON keys records, as `custos apply --keys` writes them
    #[arg(long, requires = "policy")]
    pub keys: Option<PathBuf>,
    /// NDJSON output lines to decrypt, or `-` for standard input
    #[arg(long, default_value = "-")]
    pub input: String,
}

/// One line of a keys file: `{"key":"…","value":{…}|null}` → the record's
/// key and value bytes (`None` for a tombstone).
///
/// # Errors
/// A line of another shape.
pub fn keys_line(line: &[u8]) -> Result<(String, Option<Vec<u8>>), String> {
    // Duplicate members could show one record to one reader and another to
    // the next (`"value":null,"value":{…}`).
    if let Err(crate::codec::JsonError::DuplicateKey(k)) = crate::codec::Tape::default().parse(line)
    {
        return Err(format!(
            "duplicate member `{k}`; a keys record has each member once"
        ));
    }
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| format!("not JSON ({e}); a keys file has one record per line"))?;
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or("a keys record needs a string `key`")?;
    let value = match v.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    Ok((key.to_string(), value))
}

/// The bytes of a keys file (`None` when it does not exist yet).
///
/// # Errors
/// Not a regular file (a device would be read forever), or unreadable.
pub fn read_keys_file(path: &std::path::Path) -> Result<Option<Vec<u8>>, Failure> {
    let err = |e: std::io::Error| {
        Failure::new(format!(
            "cannot read keys file {}: {e}; check the path",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
        Ok(m) if !m.is_file() => {
            return Err(Failure::new(format!(
                "keys file {} is not a regular file",
                path.display()
            )))
        }
        Ok(_) => {}
    }
    std::fs::read(path).map(Some).map_err(err)
}

/// Runs `custos decrypt`.
///
/// # Errors
/// Unreadable configuration, policy, keys or input; a keys record that does
/// not unwrap; tokens that do not decrypt (exit 1 after writing every line).
pub fn run(args: &DecryptArgs) -> Result<(), Failure> {
    let mut index = KeyIndex::default();
    let mut skipped = 0u64;
    // Records that are not custos's shape at all (tampering, or another
    // tool's topic): reported and the exit status says so.
    let mut malformed = 0u64;
    let mut skip = |at: &str, e: String, bad: bool| {
        skipped += 1;
        malformed += u64::from(bad);
        eprintln!("custos: warning: {at}: keys record skipped: {e}");
    };
    let bad = |e: &crypto::RecordError| {
        matches!(
            e,
            crypto::RecordError::BadKey | crypto::RecordError::BadValue
        )
    };
    match (&args.config, &args.policy, &args.keys) {
        (Some(config), _, _) => {
            let (cfg, _) = super::audit::load(config)?;
            let compiled = load_compiled(&cfg.policy, super::ShortKeys::Warn)?;
            let keks = compiled.keks();
            let topic = cfg.encryption.keys_topic.clone();
            super::audit::read_topic(&cfg, &topic, "custos-decrypt", |pos, key, value| {
                let Some(key) = key else { return };
                if let Err(e) = index.apply(&keks, key, value) {
                    skip(pos, e.to_string(), bad(&e));
                }
            })?;
        }
        (None, Some(policy), Some(keys)) => {
            let compiled = load_compiled(policy, super::ShortKeys::Warn)?;
            let keks = compiled.keks();
            let text = read_keys_file(keys)?.unwrap_or_default();
            for (i, line) in text.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let at = format!("{}:{}", keys.display(), i + 1);
                match keys_line(line) {
                    Ok((key, value)) => {
                        if let Err(e) = index.apply(&keks, key.as_bytes(), value.as_deref()) {
                            skip(&at, e.to_string(), bad(&e));
                        }
                    }
                    Err(e) => skip(&at, e, true),
                }
            }
        }
        _ => {
            return Err(Failure::new(
                "say where the data keys are: --config FILE (the keys topic), or --policy FILE --keys FILE (a keys file from `custos apply --keys`)",
            ))
        }
    }

    let input: Box<dyn Read> = if args.input == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.input).map_err(|e| {
            Failure::new(format!(
                "cannot read input {}: {e}; check the path",
                args.input
            ))
        })?)
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: io::Error| Failure::new(format!("cannot write output: {e}"));
    let mut counts = DecryptCounts::default();
    for (i, line) in BufReader::new(input).split(b'\n').enumerate() {
        let line = line.map_err(|e| Failure::new(format!("cannot read input: {e}")))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A line that cannot be decrypted is written as it came (its tokens
        // stay ciphertext), counted as failed, and the rest goes on.
        match parse_line(&line).and_then(|mut v| {
            decrypt_line(&index, &mut v, &mut counts)?;
            Ok(v)
        }) {
            Ok(v) => writeln!(out, "{v}").map_err(io_err)?,
            Err(e) => {
                counts.failed += 1;
                eprintln!("custos: warning: line {}: written as read: {e}", i + 1);
                out.write_all(&line).map_err(io_err)?;
                out.write_all(b"\n").map_err(io_err)?;
            }
        }
    }
    out.flush().map_err(io_err)?;
    eprintln!(
        "custos: {} value{} decrypted, {} with the key destroyed (tombstone read), {} whose key is not on the keys topic (destroyed and compacted away, or another topic's), {} that did not decrypt ({} data keys read{})",
        counts.decrypted,
        if counts.decrypted == 1 { "" } else { "s" },
        counts.destroyed,
        counts.missing,
        counts.failed,
        index.len(),
        if skipped > 0 {
            format!(", {skipped} keys records skipped")
        } else {
            String::new()
        }
    );
    if counts.failed > 0 {
        return Err(Failure::new(format!(
            "{} value(s) or line(s) did not decrypt: changed, moved to another field or event, made under a key these KEKs do not unwrap, or not an output line",
            counts.failed
        )));
    }
    if malformed > 0 {
        return Err(Failure::new(format!(
            "{malformed} keys record(s) are not custos's (see the warnings above): the keys topic or file holds records custos did not write"
        )));
    }
    Ok(())
}

/// One input line as JSON; a line with a member twice is refused (readers
/// disagree on which one counts).
fn parse_line(line: &[u8]) -> Result<Value, String> {
    if let Err(crate::codec::JsonError::DuplicateKey(k)) = crate::codec::Tape::default().parse(line)
    {
        return Err(format!("duplicate member `{k}`"));
    }
    serde_json::from_slice(line).map_err(|e| {
        format!("not JSON ({e}); decrypt reads output lines {{\"value\":…,\"headers\":{{\"custos-source\":…}}}}")
    })
}

/// Decrypts one output line in place: its value, key and headers.
///
/// # Errors
/// A line without `headers."custos-source"` or `headers."custos-purpose"`
/// (every token is bound to both).
pub fn decrypt_line(
    index: &KeyIndex,
    line: &mut Value,
    counts: &mut DecryptCounts,
) -> Result<(), String> {
    // Lines without tokens (tombstones of erasures and retention carry
    // fewer headers) go through as they are.
    if !line.to_string().contains(crypto::TOKEN_PREFIX) {
        return Ok(());
    }
    let header = |name: &str| {
        line.get("headers")
            .and_then(|h| h.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(format!("the line has no headers.\"{name}\": every encrypted value is bound to its event's source and purpose"))
    };
    let (source, purpose) = (header("custos-source")?, header("custos-purpose")?);
    let origin = crypto::Origin {
        source: &source,
        purpose: &purpose,
    };
    let Some(obj) = line.as_object_mut() else {
        return Err("the line is not a JSON object".into());
    };
    if let Some(v) = obj.get_mut("value") {
        crypto::decrypt_value(index, origin, v, counts);
    }
    if let Some(Value::String(k)) = obj.get_mut("key") {
        if k.contains(crypto::TOKEN_PREFIX) {
            *k = crypto::decrypt_text(index, origin, crypto::Seg::Key, k, counts);
        }
    }
    if let Some(Value::Object(h)) = obj.get_mut("headers") {
        for (name, v) in h.iter_mut() {
            if let Value::String(t) = v {
                if !name.starts_with("custos-") && t.contains(crypto::TOKEN_PREFIX) {
                    let place = crypto::Seg::Header(name.as_bytes());
                    *t = crypto::decrypt_text(index, origin, place, t, counts);
                }
            }
        }
    }
    Ok(())
}
