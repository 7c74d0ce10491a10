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
        /// Do not hold the trail against the input topics and the group's
        /// committed offsets (for an audit topic no longer written, e.g. after a rotation)
        #[arg(long)]
        no_anchor: bool,
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
        AuditCommand::Verify {
            config,
            input,
            no_anchor,
        } => {
            let (cfg, key) = load(config)?;
            let anchoring = input.is_none() && !no_anchor;
            let mut notes = Vec::new();
            // The committed offsets first: an offset is committed only after
            // its audit record was acknowledged (or in the same transaction),
            // so the trail read after this snapshot holds a record for every
            // input record below it, even while workers keep running.
            let committed = if anchoring {
                committed_snapshot(&cfg, &mut notes)?
            } else {
                None
            };
            let mut v = Verifier::new(key);
            read_trail(&cfg, input.as_deref(), |pos, bytes| v.check(pos, bytes))?;
            let mut reports = v.finish();
            if anchoring {
                anchor(&cfg, &mut reports, committed.as_ref(), &mut notes)?;
            }
            for note in notes {
                eprintln!("custos: {note}");
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
            let (mut found, mut summaries) = (0u64, 0u64);
            // A closed pipe (`… | head`) ends the output, never in a panic.
            let mut out = std::io::stdout().lock();
            let mut open = true;
            read_trail(&cfg, input.as_deref(), |_, bytes| {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                    return;
                };
                let named = v["subject"].as_str() == Some(wanted.as_str())
                    || v["subjects"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(wanted.as_str())));
                if named {
                    found += 1;
                    open = open && writeln!(out, "{v}").is_ok();
                }
                summaries += u64::from(v["type"] == "summary");
            })?;
            eprintln!(
                "custos: {found} audit record{} of subject {wanted}",
                plural(found as usize)
            );
            if summaries > 0 {
                eprintln!(
                    "custos: note: the trail also holds {summaries} summary record{} (audit.level = \"summary\"), which count events without naming subjects: events counted there are not listed",
                    plural(summaries as usize)
                );
            }
            Ok(())
        }
    }
}

/// Input partition → the worker group's committed offset (next to read).
type Committed = std::collections::HashMap<(String, i32), i64>;

/// The committed offsets of the worker group (`kafka.group_id`, read only)
/// on the policy's input topics; `None` when the policy cannot be read
/// (then only the chains' own ranges are checked, not their ends).
///
/// # Errors
/// The broker cannot be read.
fn committed_snapshot(cfg: &Config, notes: &mut Vec<String>) -> Result<Option<Committed>, Failure> {
    let group = &cfg.kafka.group_id;
    let topics: BTreeSet<String> = match super::load_policy(&cfg.policy) {
        // The erasure topic too: the group carries out its records, each
        // with an audit record in the partition's chain.
        Ok(p) => p
            .streams
            .iter()
            .map(|s| s.topic.clone())
            .chain(p.erasure_topic.clone())
            .collect(),
        Err(_) => {
            notes.push(format!(
                "policy {} unreadable: chain ends are not held against group `{group}`'s committed offsets (only each chain's own range against the input)",
                cfg.policy.display()
            ));
            return Ok(None);
        }
    };
    let consumer = input_reader(cfg, group)?;
    let timeout = Duration::from_secs(30);
    let mut out = Committed::new();
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
            notes.push(format!(
                "input topic `{topic}` does not exist: nothing to hold its chains against"
            ));
            continue;
        }
        let got = consumer.committed_offsets(tpl, timeout).map_err(|e| {
            Failure::new(format!(
                "cannot read group `{group}`'s committed offsets: {e}"
            ))
        })?;
        for e in got.elements() {
            if let Some(c) = e.offset().to_raw().filter(|c| *c > 0) {
                out.insert((topic.clone(), e.partition()), c);
            }
        }
    }
    Ok(Some(out))
}

/// Holds each chain against its input: every input record from the chain's
/// first covered offset up to its last one, and up to the group's committed
/// offset (every record below it was processed), must have an audit record
/// (`record` or `dead_letter`). An input record without one is a break:
/// records removed from the trail (at the chain's end: its newest records),
/// or input skipped by an offset reset. Offsets the input holds no record at
/// (transaction markers, compaction, retention) need none, so the restarts
/// over such gaps are cleared.
///
/// # Errors
/// The broker cannot be read.
fn anchor(
    cfg: &Config,
    reports: &mut [ChainReport],
    committed: Option<&Committed>,
    notes: &mut Vec<String>,
) -> Result<(), Failure> {
    let group = &cfg.kafka.group_id;
    let mut cleared = 0usize;
    for r in reports.iter_mut() {
        if r.chain.starts_with("retention:") {
            // Sweeps of an output topic: nothing to hold against an input.
            continue;
        }
        let Some((topic, partition)) = r
            .chain
            .rsplit_once('/')
            .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
        else {
            continue;
        };
        let (Some(&first), Some(&last)) = (r.covered.first(), r.covered.last()) else {
            continue;
        };
        let c = committed.and_then(|m| m.get(&(topic.clone(), partition)).copied());
        let end = c.map_or(last + 1, |c| c.max(last + 1));
        let (missing, first_missing) =
            scan_missing(cfg, &topic, partition, first, end, &r.covered)?;
        match first_missing {
            Some(o) if o > last => r.breaks.push(Break {
                position: format!("end of {}", r.chain),
                reason: format!(
                    "group `{group}` committed input offset {} but the chain ends at input offset {last}: {missing} input record{} from offset {o} were processed and have no audit record (the newest records of this chain were removed, or an offset reset skipped them)",
                    c.unwrap_or(end),
                    plural(missing as usize)
                ),
            }),
            Some(o) => r.breaks.push(Break {
                position: format!("{} input offset {o}", r.chain),
                reason: format!(
                    "{missing} input record{} between offsets {first} and {} have no audit record, the first at offset {o} (records removed from the trail, or skipped by an offset reset)",
                    plural(missing as usize),
                    end - 1
                ),
            }),
            None => {
                // Every input record is covered: restarts over gaps are explained.
                cleared += r.suspicious_restarts.len();
                r.suspicious_restarts.clear();
            }
        }
    }
    if let Some(m) = committed {
        let absent = m
            .keys()
            .filter(|(t, p)| {
                let name = crate::audit::chain_name(t, p);
                !reports.iter().any(|r| r.chain == name)
            })
            .count();
        if absent > 0 {
            notes.push(format!(
                "{absent} input partition{} with committed offsets of group `{group}` have no chain in this trail and are not held (a new audit topic since their last record, or their whole chain is gone)",
                plural(absent)
            ));
        }
    }
    if cleared > 0 {
        notes.push(format!(
            "{cleared} restart{} skipped input offsets that hold no record (transaction markers, compaction): not suspicious",
            plural(cleared)
        ));
    }
    Ok(())
}

/// A reader that commits nothing, sees only committed transactions and
/// reports each partition's end (the audit topic, the governed inputs).
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

/// Reads one input partition from `from` up to `end` (exclusive) and counts
/// the records whose offset is not in `covered`, with the first of them.
/// Only offsets are looked at, never content.
fn scan_missing(
    cfg: &Config,
    topic: &str,
    partition: i32,
    from: i64,
    end: i64,
    covered: &std::collections::BTreeSet<i64>,
) -> Result<(u64, Option<i64>), Failure> {
    if from >= end {
        return Ok((0, None));
    }
    let consumer = input_reader(cfg, &format!("{}-audit-verify", cfg.kafka.group_id))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from.max(0)))
        .map_err(|e| Failure::new(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Failure::new(format!("cannot read `{topic}`: {e}")))?;
    let (mut missing, mut first) = (0u64, None);
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition => {
                last_progress = Instant::now();
                let o = m.offset();
                if o >= end {
                    break;
                }
                if o >= from && !covered.contains(&o) {
                    missing += 1;
                    first.get_or_insert(o);
                }
                if o + 1 >= end {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break,
            Some(Err(e)) => return Err(Failure::new(format!("cannot read `{topic}`: {e}"))),
            None if last_progress.elapsed() > Duration::from_secs(30) => {
                return Err(Failure::new(format!(
                    "reading `{topic}/{partition}` stalled for 30 s at offsets {from}..{end}"
                )))
            }
            None => {}
        }
    }
    Ok((missing, first))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The config and the audit key (`audit.key`, default `env = "CUSTOS_AUDIT_KEY"`).
pub(crate) fn load(path: &Path) -> Result<(Config, AuditKey), Failure> {
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
    read_topic(
        cfg,
        &cfg.audit.topic,
        "custos-audit-reader",
        |pos, _, value| {
            each(pos, value.unwrap_or_default());
        },
    )
}

/// Reads every partition of `topic` from its beginning to its end:
/// `each(position, key, value)` per record, tombstones with `None`.
///
/// # Errors
/// The embedded broker, a missing topic, a read error or a stall of 30 s.
pub(crate) fn read_topic(
    cfg: &Config,
    topic: &str,
    group: &str,
    mut each: impl FnMut(&str, Option<&[u8]>, Option<&[u8]>),
) -> Result<(), Failure> {
    if cfg.embedded() {
        return Err(Failure::new(
            "the embedded broker exists only inside `custos run` and `custos demo`; point kafka.bootstrap_servers at a broker or pass --input",
        ));
    }
    let timeout = Duration::from_secs(30);
    let consumer = input_reader(cfg, group)?;
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
            "topic `{topic}` does not exist or has no partitions"
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
                each(&pos, m.key(), m.payload());
            }
        }
    }
    Ok(())
}
