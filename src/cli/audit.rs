//! `custos audit verify` and `custos audit trace`: read the audit trail (the
//! audit topic, or an NDJSON file written by `custos apply --audit`), check
//! its hash chains, or list what happened to one subject's data.
//!
//! Neither command prints raw personal data: records hold none, and the
//! subject given to `trace` is only used to compute its HMAC.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::Failure;
use std::collections::BTreeSet;

use crate::audit::{AuditKey, Break, ChainReport, Verifier};
use crate::config::{env_overrides, Config};
use crate::kafka::base_config;
use crate::kafka::subjects::Quiet;
use crate::policy::keys::read_secret;
use crate::policy::KeySource;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of every input partition in the audit trail; exit 1 on any break
    Verify {
        /// The worker configuration (audit topic, audit key, Kafka settings)
        #[arg(long, default_value = "custos.toml")]
        config: PathBuf,
        /// Read NDJSON audit records from this file (`custos apply --audit`) instead of the audit topic
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// List every audit record of a data subject: where its data went, and where not and why
    Trace {
        #[arg(long, default_value = "custos.toml")]
        config: PathBuf,
        /// The subject id as it appears in events (only its HMAC is compared);
        /// `-` reads it from standard input, keeping it out of shell history and `ps`
        #[arg(long)]
        subject: String,
        /// Read NDJSON audit records from this file instead of the audit topic
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

/// Runs an audit command.
///
/// # Errors
/// Unreadable config, key or trail; for `verify`, any break in a chain.
pub fn run(cmd: &AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify { config, input } => {
            let (cfg, key) = load(config)?;
            let mut v = Verifier::new(key);
            read_trail(&cfg, input.as_deref(), |pos, bytes| v.check(pos, bytes))?;
            let mut reports = v.finish();
            if input.is_none() {
                for note in anchor(&cfg, &mut reports)? {
                    eprintln!("custos: {note}");
                }
            }
            let (mut records, mut breaks, mut replays, mut restarts) = (0, 0, 0, 0);
            for r in &reports {
                records += r.checked;
                breaks += r.breaks.len();
                replays += r.replays;
                restarts += r.restarts;
                println!(
                    "{}: {} record{} checked, {} replay{}, {} restart{}, {} break{}",
                    r.chain,
                    r.checked,
                    plural(r.checked as usize),
                    r.replays,
                    plural(r.replays as usize),
                    r.restarts,
                    plural(r.restarts as usize),
                    r.breaks.len(),
                    plural(r.breaks.len())
                );
                if r.starts_mid_chain {
                    println!("  starts mid-chain: the records before the first one read are gone (audit topic retention?)");
                }
                for pos in &r.suspicious_restarts {
                    println!("  suspicious restart at {pos}: its input offset lies past the record before it; records before it may have been deleted (or the input has a gap such as a transaction marker)");
                }
                for b in &r.breaks {
                    println!("  break at {}: {}", b.position, b.reason);
                }
            }
            if breaks > 0 {
                return Err(Failure::new(format!(
                    "audit trail broken: {breaks} break{} in {records} record{}; the records listed above were altered, removed or reordered, or signed with another key",
                    plural(breaks),
                    plural(records as usize)
                )));
            }
            eprintln!(
                "custos: audit trail intact: {records} record{} in {} chain{}{}{}",
                plural(records as usize),
                reports.len(),
                plural(reports.len()),
                if replays > 0 {
                    format!("; {replays} replayed after a worker stopped (at-least-once)")
                } else {
                    String::new()
                },
                if restarts > 0 {
                    format!("; {restarts} chain restart{} where a worker did not get the committed head (broker without offset-commit metadata)", plural(restarts as usize))
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        AuditCommand::Trace {
            config,
            subject,
            input,
        } => {
            let (cfg, key) = load(config)?;
            let subject = if subject == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| {
                    Failure::new(format!("cannot read the subject from stdin: {e}"))
                })?;
                line.trim_end_matches(['\n', '\r']).to_string()
            } else {
                subject.clone()
            };
            let wanted = key.subject(&subject);
            let mut found = 0u64;
            // A closed pipe (`… | head`) ends the output, never in a panic.
            let mut out = std::io::stdout().lock();
            let mut open = true;
            read_trail(&cfg, input.as_deref(), |_, bytes| {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                    return;
                };
                if v["subject"].as_str() == Some(wanted.as_str()) {
                    found += 1;
                    open = open && writeln!(out, "{v}").is_ok();
                }
            })?;
            eprintln!(
                "custos: {found} audit record{} of subject {wanted}",
                plural(found as usize)
            );
            Ok(())
        }
    }
}

/// Holds the trail against its input. Every input record below the worker
/// group's committed offset was processed, and every processed record has an
/// audit record (`record` or `dead_letter`), so a chain that ends below the
/// committed offset while the input holds a record there lost its newest
/// records; and a restart that skipped input offsets the input holds records
/// at lost the records before it. Gaps the input explains (transaction
/// markers, compaction) are cleared.
///
/// # Errors
/// The broker cannot be read.
fn anchor(cfg: &Config, reports: &mut Vec<ChainReport>) -> Result<Vec<String>, Failure> {
    let group = &cfg.kafka.group_id;
    let mut notes = Vec::new();
    let mut topics: BTreeSet<String> = reports
        .iter()
        .filter_map(|r| r.chain.rsplit_once('/').map(|(t, _)| t.to_string()))
        .collect();
    match super::load_policy(&cfg.policy) {
        Ok(p) => topics.extend(p.streams.iter().map(|s| s.topic.clone())),
        Err(_) => notes.push(format!(
            "policy {} unreadable: only input partitions with records in the trail are held against group `{group}`'s committed offsets",
            cfg.policy.display()
        )),
    }
    let consumer = input_reader(cfg, group)?;
    let timeout = Duration::from_secs(30);
    let mut committed: Vec<(String, i32, i64)> = Vec::new();
    for topic in &topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| Failure::new(format!("cannot read metadata of `{topic}`: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        for t in md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
        {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
        if tpl.count() == 0 {
            notes.push(format!("input topic `{topic}` does not exist: its chains are not held against committed offsets"));
            continue;
        }
        let got = consumer.committed_offsets(tpl, timeout).map_err(|e| {
            Failure::new(format!(
                "cannot read group `{group}`'s committed offsets: {e}"
            ))
        })?;
        for e in got.elements() {
            if let Some(c) = e.offset().to_raw().filter(|c| *c > 0) {
                committed.push((topic.clone(), e.partition(), c));
            }
        }
    }
    let mut cleared = 0usize;
    for (topic, partition, c) in committed {
        let chain = crate::audit::chain_name(&topic, partition);
        let found = reports.iter().position(|r| r.chain == chain);
        let last = found.and_then(|i| reports[i].last_offset).unwrap_or(-1);
        if c <= last + 1 {
            continue;
        }
        let Some(o) = first_record(cfg, &topic, partition, last + 1)?.filter(|o| *o < c) else {
            continue;
        };
        let i = found.unwrap_or_else(|| {
            reports.push(ChainReport {
                chain: chain.clone(),
                ..ChainReport::default()
            });
            reports.len() - 1
        });
        reports[i].breaks.push(Break {
            position: format!("end of {chain}"),
            reason: format!(
                "group `{group}` committed input offset {c} but the chain ends at input offset {last}: input record {o} was processed and has no audit record (the newest records of this chain were removed)"
            ),
        });
    }
    for r in reports.iter_mut() {
        let (topic, partition) = match r.chain.rsplit_once('/') {
            Some((t, p)) => match p.parse::<i32>() {
                Ok(p) => (t.to_string(), p),
                Err(_) => continue,
            },
            None => continue,
        };
        for (position, after, at) in std::mem::take(&mut r.gaps) {
            match first_record(cfg, &topic, partition, after + 1)?.filter(|o| *o < at) {
                Some(o) => r.breaks.push(Break {
                    position: position.clone(),
                    reason: format!(
                        "restart at input offset {at} after input offset {after}, but input record {o} lies between and has no audit record (records before the restart were removed)"
                    ),
                }),
                None => cleared += 1,
            }
            r.suspicious_restarts.retain(|p| *p != position);
        }
    }
    if cleared > 0 {
        notes.push(format!(
            "{cleared} restart{} skipped input offsets that hold no record (transaction markers or compaction): not suspicious",
            plural(cleared)
        ));
    }
    Ok(notes)
}

/// A consumer of the governed inputs as the worker reads them.
fn input_reader(cfg: &Config, group: &str) -> Result<BaseConsumer<Quiet>, Failure> {
    let mut base = base_config(&cfg.kafka.bootstrap_servers, &cfg.kafka.properties);
    base.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    base.create_with_context(Quiet)
        .map_err(|e| Failure::new(format!("cannot create a Kafka consumer: {e}")))
}

/// The offset of the first record at or after `from` in one input partition,
/// or `None` when there is none (a fresh consumer each time, so nothing of an
/// earlier read can answer).
fn first_record(
    cfg: &Config,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Option<i64>, Failure> {
    let consumer = input_reader(cfg, &format!("{}-audit-probe", cfg.kafka.group_id))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from.max(0)))
        .map_err(|e| Failure::new(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Failure::new(format!("cannot read `{topic}`: {e}")))?;
    let start = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= from => {
                return Ok(Some(m.offset()))
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(None),
            Some(Err(e)) => return Err(Failure::new(format!("cannot read `{topic}`: {e}"))),
            None if start.elapsed() > Duration::from_secs(30) => {
                return Err(Failure::new(format!(
                    "reading `{topic}/{partition}` from offset {from} stalled for 30 s"
                )))
            }
            None => {}
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The config and the audit key (`audit.key`, default `env = "CUSTOS_AUDIT_KEY"`).
fn load(path: &Path) -> Result<(Config, AuditKey), Failure> {
    let cfg = Config::load(path, env_overrides(std::env::vars())).map_err(|e| {
        Failure::new(format!(
            "{e}; fix {} (or the CUSTOS_* variable)",
            path.display()
        ))
    })?;
    let key = audit_key(&cfg)?;
    Ok((cfg, key))
}

/// Reads the audit key the configuration names.
///
/// # Errors
/// The variable or file is missing or empty.
pub fn audit_key(cfg: &Config) -> Result<AuditKey, Failure> {
    let src = cfg
        .audit
        .key
        .as_ref()
        .and_then(|k| k.source())
        .unwrap_or_else(|| KeySource::Env("CUSTOS_AUDIT_KEY".into()));
    read_secret("audit.key", &src, |v| std::env::var(v).ok())
        .map(|b| AuditKey::new(&b))
        .map_err(|e| {
            Failure::new(format!(
                "{e}; custos signs audit records and hides subject ids with it"
            ))
        })
}

/// Calls `each(position, record bytes)` for every record of the trail, in order.
fn read_trail(
    cfg: &Config,
    input: Option<&Path>,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<(), Failure> {
    if let Some(path) = input {
        let f = std::fs::File::open(path)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line =
                line.map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            each(&format!("{}:{}", path.display(), i + 1), &line);
        }
        return Ok(());
    }
    if cfg.embedded() {
        return Err(Failure::new(
            "the embedded broker exists only inside `custos run` and `custos demo`; point kafka.bootstrap_servers at a broker or pass --input",
        ));
    }
    let topic = &cfg.audit.topic;
    let timeout = Duration::from_secs(30);
    let mut base = base_config(&cfg.kafka.bootstrap_servers, &cfg.kafka.properties);
    base.set("group.id", "custos-audit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer<Quiet> = base
        .create_with_context(Quiet)
        .map_err(|e| Failure::new(format!("cannot create a Kafka consumer: {e}")))?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Failure::new(format!("cannot read metadata of `{topic}`: {e}")))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Failure::new(format!(
            "audit topic `{topic}` does not exist or has no partitions"
        )));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| Failure::new(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Failure::new(format!("cannot read `{topic}`: {e}")))?;
    let mut open: Vec<i32> = partitions.clone();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if last_progress.elapsed() > timeout {
                    return Err(Failure::new(format!(
                        "reading `{topic}` stalled for {} s with partitions {open:?} unfinished",
                        timeout.as_secs()
                    )));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.retain(|x| *x != p);
                last_progress = Instant::now();
            }
            Some(Err(e)) => return Err(Failure::new(format!("cannot read `{topic}`: {e}"))),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let pos = format!("{topic}/{}/{}", m.partition(), m.offset());
                each(&pos, m.payload().unwrap_or_default());
            }
        }
    }
    Ok(())
}
