//! `custos keys rotate`: re-wraps every data key on the keys topic under the
//! KEK the policy names now, without touching the data encrypted under them.
//!
//! A record keeps its record key (and so its key id and its place in the
//! agreement); only its value changes, and compaction drops the old one.
//! Records already wrapped under the current KEK are left alone, so a
//! rotation that was interrupted, or keys written by workers that still had
//! the old KEK, are finished by running it again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;

use super::{load_compiled, Failure};
use crate::config::Config;
use crate::crypto::{Kek, RecordKey};
use crate::policy::keys::read_secret;
use crate::policy::plan::Compiled;
use crate::policy::KeySource;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every data key under the KEK the policy's secret holds now
    /// (KEK rotation); the data encrypted under the keys is not touched
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The worker configuration (broker, keys topic, policy with the new KEK secret)
    #[arg(long, default_value = "custos.toml")]
    pub config: PathBuf,
    /// The KEK to rotate (a key name of the policy); needed when the policy has several
    #[arg(long)]
    pub kek: Option<String>,
    /// Environment variable holding the previous KEK secret
    #[arg(long, conflicts_with = "from_file")]
    pub from_env: Option<String>,
    /// File holding the previous KEK secret
    #[arg(long)]
    pub from_file: Option<PathBuf>,
}

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub rewrapped: u64,
    /// Already under the current KEK.
    pub current: u64,
    /// Under a KEK that is neither the previous nor the current one.
    pub foreign: u64,
    /// Candidates that lost the agreement, tombstoned.
    pub losers: u64,
}

/// Runs a `custos keys` command.
///
/// # Errors
/// Unreadable configuration or secrets, an unreachable broker.
pub fn run(cmd: &KeysCommand) -> Result<(), Failure> {
    let KeysCommand::Rotate(args) = cmd;
    let (cfg, _) = super::audit::load(&args.config)?;
    let compiled = load_compiled(&cfg.policy, super::ShortKeys::Refuse)?;
    let src = match (&args.from_env, &args.from_file) {
        (Some(v), None) => KeySource::Env(v.clone()),
        (None, Some(f)) => KeySource::File(f.display().to_string()),
        _ => {
            return Err(Failure::new(
                "say where the previous KEK secret is: --from-env VAR or --from-file PATH",
            ))
        }
    };
    let previous = read_secret("previous KEK", &src, |v| std::env::var(v).ok())
        .map_err(|e| Failure::new(e.to_string()))?;
    let r = rotate(&cfg, &compiled, args.kek.as_deref(), &previous)?;
    eprintln!(
        "custos: {} data key(s) re-wrapped under the current KEK, {} already under it, {} under another KEK (left as they are), {} losing candidate(s) tombstoned",
        r.rewrapped, r.current, r.foreign, r.losers
    );
    Ok(())
}

/// Re-wraps the keys topic's records of KEK `kek` (the policy's only KEK
/// when `None`) from the `previous` secret to the policy's current one.
///
/// # Errors
/// No or an unknown KEK, an unreadable topic, a record that names the
/// previous KEK's fingerprint but does not unwrap, a produce that fails.
pub fn rotate(
    cfg: &Config,
    compiled: &Compiled,
    kek: Option<&str>,
    previous: &[u8],
) -> Result<Rotated, Failure> {
    let keks = compiled.keks();
    let current = match kek {
        Some(name) => keks.iter().find(|k| k.name() == name).ok_or_else(|| {
            Failure::new(format!(
                "the policy has no encrypt rule with key `{name}`; its KEKs: {}",
                names(&keks)
            ))
        })?,
        None if keks.len() == 1 => &keks[0],
        None => {
            return Err(Failure::new(format!(
                "the policy has {} KEKs ({}): say which with --kek",
                keks.len(),
                names(&keks)
            )))
        }
    };
    let old = Kek::new(current.name(), previous);
    if old.fingerprint() == current.fingerprint() {
        return Err(Failure::new(
            "the previous secret is the current one: set the policy's key to the new secret and pass the old one",
        ));
    }
    // Every record key in the order of its first record, with its latest
    // value (`None` once tombstoned).
    let topic = cfg.encryption.keys_topic.clone();
    let mut order: Vec<String> = Vec::new();
    let mut latest: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    super::audit::read_topic(cfg, &topic, "custos-keys-rotate", |_, key, value| {
        let Some(key) = key.and_then(|k| String::from_utf8(k.to_vec()).ok()) else {
            return;
        };
        if !latest.contains_key(&key) {
            order.push(key.clone());
        }
        latest.insert(key, value.map(<[u8]>::to_vec));
    })?;
    let producer: FutureProducer =
        crate::kafka::base_config(&cfg.kafka.bootstrap_servers, &cfg.kafka.properties)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| Failure::new(format!("cannot create a Kafka producer: {e}")))?;
    let send = |key: &str, value: Option<&[u8]>| -> Result<(), Failure> {
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&topic).partition(0).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer
            .send_result(record)
            .map(drop)
            .map_err(|(e, _)| Failure::new(format!("cannot queue a keys record: {e}")))
    };
    let mut r = Rotated::default();
    let now = crate::audit::rfc3339_ms(chrono::Utc::now().timestamp_millis());
    // The first live record of a subject is its key; re-writing a later one
    // could put it first, so the losers are tombstoned instead.
    let mut winners: std::collections::HashSet<(String, [u8; 16])> =
        std::collections::HashSet::new();
    for key in &order {
        let Some(Some(value)) = latest.get(key) else {
            continue;
        };
        let Ok(rk) = RecordKey::parse(key.as_bytes()) else {
            continue;
        };
        if !winners.insert((rk.kek.clone(), rk.subject)) {
            send(key, None)?;
            r.losers += 1;
            continue;
        }
        if rk.kek != current.name() {
            continue;
        }
        let v: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        let fp = v.get("kek").and_then(Value::as_str).unwrap_or_default();
        if fp == current.fingerprint() {
            r.current += 1;
            continue;
        }
        if fp != old.fingerprint() {
            r.foreign += 1;
            continue;
        }
        let data = old
            .unwrap(key, value)
            .map_err(|e| Failure::new(format!("keys record `{key}`: {e}")))?;
        let subjects = v
            .get("subjects")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wrapped = current.wrap(key, &data, &now, subjects);
        send(key, Some(&wrapped))?;
        r.rewrapped += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| Failure::new(format!("re-wrapped keys not acknowledged: {e}")))?;
    Ok(r)
}

fn names(keks: &[Kek]) -> String {
    keks.iter().map(Kek::name).collect::<Vec<_>>().join(", ")
}
