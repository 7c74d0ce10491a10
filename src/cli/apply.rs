//! `custos apply`: the worker's governance run offline over NDJSON.
//!
//! Each input line is one event (or, with `--envelope`, a record envelope
//! `{"key":…,"value":…,"headers":{…},"timestamp":…}`). Output: one line per
//! emitted output, in input order, purposes in policy order. Bad lines are
//! dead-lettered (reported on stderr by number and reason only, written whole
//! to `--dead-letter`), and processing goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use base64::Engine as _;
use clap::Args;
use serde_json::{Map, Value};

use super::{load_compiled, Failure};
use crate::audit::{self, AuditKey, Chains, StreamAudit};
use crate::engine::{self, DeadLetterReason, Outcome, Record, Scratch, Suppression, Verdict};
use crate::policy::keys::{read_secret, KeyError};
use crate::policy::Format;
use crate::policy::KeySource;
use crate::state::MemoryState;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The policy file
    pub file: PathBuf,
    /// The stream whose governance to apply
    #[arg(long)]
    pub stream: String,
    /// Only print outputs of this purpose
    #[arg(long)]
    pub purpose: Option<String>,
    /// NDJSON input file, or `-` for standard input
    #[arg(long, default_value = "-")]
    pub input: String,
    /// Input lines are envelopes: {"key":…,"value":…,"headers":{…},"timestamp":…}
    #[arg(long)]
    pub envelope: bool,
    /// NDJSON of consent-topic values, applied in order
    #[arg(long)]
    pub consent: Option<PathBuf>,
    /// NDJSON of erasure-topic values
    #[arg(long)]
    pub erasure: Option<PathBuf>,
    /// Processing time (RFC 3339); default: now
    #[arg(long)]
    pub now: Option<String>,
    /// Write dead-lettered records here (NDJSON; holds raw input: protect it like the input)
    #[arg(long = "dead-letter")]
    pub dead_letter: Option<PathBuf>,
    /// Write the audit records (SPEC §6, one per input line, hash-chained) here as NDJSON.
    /// Signed with CUSTOS_AUDIT_KEY; without it, with a one-time random key (a warning says so)
    #[arg(long)]
    pub audit: Option<PathBuf>,
}

/// The audit key for `apply --audit`: `CUSTOS_AUDIT_KEY` (read like
/// `custos run` reads it, so `audit verify` checks the same bytes), else a
/// one-time random key.
fn apply_audit_key() -> Result<AuditKey, Failure> {
    let src = KeySource::Env("CUSTOS_AUDIT_KEY".into());
    match read_secret("audit.key", &src, |v| std::env::var(v).ok()) {
        Ok(k) => Ok(AuditKey::new(&k)),
        Err(KeyError::MissingEnv { .. }) => {
            eprintln!("custos: warning: CUSTOS_AUDIT_KEY is not set: the audit records are signed with a one-time random key and cannot be verified later");
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| {
                Failure::new(format!("no randomness for a one-time audit key: {e}"))
            })?;
            Ok(AuditKey::new(&k))
        }
        Err(e) => Err(Failure::new(format!("{e}; it signs the audit records"))),
    }
}

fn read_state(
    consent: Option<&PathBuf>,
    erasure: Option<&PathBuf>,
) -> Result<MemoryState, Failure> {
    let mut state = MemoryState::new();
    for (path, is_consent) in [(consent, true), (erasure, false)] {
        let Some(path) = path else { continue };
        let text = std::fs::read(path).map_err(|e| {
            Failure::new(format!(
                "cannot read {}: {e}; check the path",
                path.display()
            ))
        })?;
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let r = if is_consent {
                state.apply_consent(None, Some(line))
            } else {
                state.apply_erasure(None, Some(line)).map(|_| ())
            };
            r.map_err(|e| {
                Failure::new(format!(
                    "{}:{}: {e}; fix the {} record (custos will not guess a data subject's wishes)",
                    path.display(),
                    i + 1,
                    if is_consent { "consent" } else { "erasure" }
                ))
            })?;
        }
    }
    Ok(state)
}

/// One input record decoded from an envelope line.
struct Envelope {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

fn decode_envelope(line: &[u8]) -> Result<Envelope, String> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| format!("envelope is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("envelope is not a JSON object".into());
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "key" | "value" | "headers" | "timestamp" | "partition" | "offset" | "topic"
        ) {
            return Err(
                "envelope has an unknown member; use key, value, headers, timestamp".into(),
            );
        }
    }
    let key = match m.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    let value = match m.get("value") {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(Value::Null) | None => {
            return Err("envelope has no value (tombstones are not events)".into())
        }
        Some(other) => other.to_string().into_bytes(),
    };
    let mut headers = Vec::new();
    match m.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                match v {
                    Value::String(s) => headers.push((k.clone(), s.as_bytes().to_vec())),
                    Value::Null => {}
                    other => headers.push((k.clone(), other.to_string().into_bytes())),
                }
            }
        }
        Some(_) => return Err("envelope headers must be an object of strings".into()),
    }
    let timestamp = match m.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            engine::parse_time(t)
                .ok_or("envelope timestamp is neither epoch millis nor RFC 3339")?,
        ),
    };
    Ok(Envelope {
        key,
        value,
        headers,
        timestamp,
    })
}

fn text_or_b64(bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(s) => ("value", Value::String(s.to_string())),
        Err(_) => (
            "value_base64",
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

#[derive(Default)]
struct Counts {
    records: u64,
    dead: u64,
    emitted: Vec<u64>,
    suppressed: Vec<[u64; 4]>,
}

/// Runs `custos apply`.
///
/// # Errors
/// Bad policy, missing secrets, unknown stream or purpose, unreadable files.
pub fn run(args: &ApplyArgs) -> Result<(), Failure> {
    let compiled = load_compiled(&args.file)?;
    let plan = compiled.stream(&args.stream).ok_or_else(|| {
        Failure::new(format!(
            "unknown stream `{}`; the policy has: {}",
            args.stream,
            compiled
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if compiled
        .policy
        .stream(&args.stream)
        .is_some_and(|s| s.format == Format::Avro)
    {
        return Err(Failure::new(format!(
            "stream `{}` is avro; `custos apply` reads JSON events only",
            args.stream
        )));
    }
    let only = match &args.purpose {
        None => None,
        Some(p) => Some(
            plan.outputs
                .iter()
                .position(|o| &o.name == p)
                .ok_or_else(|| {
                    Failure::new(format!(
                        "purpose `{p}` has no output in stream `{}`; its outputs are: {}",
                        args.stream,
                        plan.outputs
                            .iter()
                            .map(|o| o.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        ),
    };
    let state = read_state(args.consent.as_ref(), args.erasure.as_ref())?;
    let now_ms = match &args.now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| {
                Failure::new(format!(
                    "--now `{t}` is not RFC 3339; write e.g. 2026-11-22T10:00:00Z"
                ))
            })?
            .timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let input: Box<dyn Read> = if args.input == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&args.input).map_err(|e| {
            Failure::new(format!(
                "cannot read input {}: {e}; check the path",
                args.input
            ))
        })?)
    };
    let mut dl_out = match &args.dead_letter {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|e| {
            Failure::new(format!(
                "cannot create dead-letter file {}: {e}",
                p.display()
            ))
        })?)),
        None => None,
    };
    let mut audit_out = match &args.audit {
        Some(p) => Some((
            BufWriter::new(File::create(p).map_err(|e| {
                Failure::new(format!("cannot create audit file {}: {e}", p.display()))
            })?),
            apply_audit_key()?,
            StreamAudit::new(plan),
            Chains::default(),
        )),
        None => None,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let policy_id = compiled.policy.id();
    let mut scratch = Scratch::default();
    let mut counts = Counts {
        emitted: vec![0; plan.outputs.len()],
        suppressed: vec![[0; 4]; plan.outputs.len()],
        ..Counts::default()
    };
    let io_err = |e: io::Error| Failure::new(format!("cannot write output: {e}"));

    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut offset = 0i64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::new(format!("cannot read input: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        counts.records += 1;
        let this_offset = offset;
        offset += 1;
        let source = format!("{}/0/{this_offset}", plan.topic);

        let mut timestamp = Some(now_ms);
        let (envelope, verdict) = if args.envelope {
            match decode_envelope(raw) {
                Ok(env) => {
                    timestamp = env.timestamp.or(Some(now_ms));
                    let rec = Record {
                        topic: &plan.topic,
                        partition: 0,
                        offset: this_offset,
                        timestamp: env.timestamp.or(Some(now_ms)),
                        key: env.key.as_deref(),
                        value: &env.value,
                        headers: &env.headers,
                    };
                    let v = engine::govern(plan, &policy_id, &rec, &state, now_ms, &mut scratch);
                    (Some(env), v)
                }
                Err(detail) => (
                    None,
                    Verdict::DeadLetter(engine::DeadLetter {
                        reason: DeadLetterReason::Decode,
                        detail,
                    }),
                ),
            }
        } else {
            let rec = Record {
                topic: &plan.topic,
                partition: 0,
                offset: this_offset,
                timestamp: Some(now_ms),
                key: None,
                value: raw,
                headers: &[],
            };
            (
                None,
                engine::govern(plan, &policy_id, &rec, &state, now_ms, &mut scratch),
            )
        };

        if let Some((w, key, sa, chains)) = audit_out.as_mut() {
            let src = audit::Source {
                topic: &plan.topic,
                partition: 0,
                offset: this_offset,
                timestamp,
            };
            let ctx = audit::Context {
                policy: &policy_id,
                worker: "custos-apply",
                processed_at_ms: now_ms,
            };
            let record = match &verdict {
                Verdict::DeadLetter(d) => {
                    audit::dead_letter(&plan.name, &src, d.reason.code(), &ctx)
                }
                Verdict::Governed(g) => audit::governed(sa, key, &src, g, &ctx),
            };
            let (text, _) = chains.append(key, &src.chain(), &record);
            w.write_all(text.as_bytes()).map_err(io_err)?;
            w.write_all(b"\n").map_err(io_err)?;
        }
        match verdict {
            Verdict::DeadLetter(d) => {
                counts.dead += 1;
                eprintln!(
                    "custos: line {line_no} ({source}) dead-lettered: {} ({})",
                    d.reason.code(),
                    d.detail
                );
                if let Some(w) = dl_out.as_mut() {
                    let mut rec = Map::new();
                    rec.insert("reason".into(), Value::String(d.reason.code().into()));
                    rec.insert("detail".into(), Value::String(d.detail.clone()));
                    rec.insert("source".into(), Value::String(source.clone()));
                    let mut headers = Map::new();
                    match &envelope {
                        Some(env) => {
                            rec.insert(
                                "key".into(),
                                env.key.as_deref().map_or(Value::Null, |k| {
                                    Value::String(String::from_utf8_lossy(k).into_owned())
                                }),
                            );
                            let (name, v) = text_or_b64(&env.value);
                            rec.insert(name.into(), v);
                            for (k, v) in &env.headers {
                                headers.insert(
                                    k.clone(),
                                    Value::String(String::from_utf8_lossy(v).into_owned()),
                                );
                            }
                        }
                        None if args.envelope => {
                            rec.insert("key".into(), Value::Null);
                            let (name, v) = text_or_b64(raw);
                            rec.insert(name.into(), v);
                        }
                        None => {
                            rec.insert("key".into(), Value::Null);
                            let (name, v) = text_or_b64(raw);
                            rec.insert(name.into(), v);
                        }
                    }
                    headers.insert("custos-error".into(), Value::String(d.reason.code().into()));
                    headers.insert("custos-source".into(), Value::String(source.clone()));
                    rec.insert("headers".into(), Value::Object(headers));
                    serde_json::to_writer(&mut *w, &Value::Object(rec))
                        .map_err(|e| Failure::new(e.to_string()))?;
                    w.write_all(b"\n").map_err(io_err)?;
                }
            }
            Verdict::Governed(g) => {
                for (i, outcome) in g.outcomes.into_iter().enumerate() {
                    match outcome {
                        Outcome::Suppressed(s) => {
                            let si = Suppression::ALL.iter().position(|x| *x == s).unwrap_or(0);
                            counts.suppressed[i][si] += 1;
                        }
                        Outcome::Emitted(o) => {
                            counts.emitted[i] += 1;
                            if only.is_some_and(|p| p != i) {
                                continue;
                            }
                            write_output(
                                &mut out,
                                &plan.outputs[i].name,
                                &plan.outputs[i].topic,
                                &o,
                            )
                            .map_err(io_err)?;
                        }
                    }
                }
            }
        }
    }
    out.flush().map_err(io_err)?;
    if let Some(w) = dl_out.as_mut() {
        w.flush().map_err(io_err)?;
    }
    if let Some((w, ..)) = audit_out.as_mut() {
        w.flush().map_err(io_err)?;
    }
    let per: Vec<String> = plan
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let s = counts.suppressed[i];
            format!(
                "{} {} emitted, {} suppressed (consent {}, objection {}, erasure {}, expired {})",
                o.name,
                counts.emitted[i],
                s.iter().sum::<u64>(),
                s[0],
                s[1],
                s[2],
                s[3]
            )
        })
        .collect();
    eprintln!(
        "custos: {} record{}: {} governed, {} dead-lettered; {}",
        counts.records,
        if counts.records == 1 { "" } else { "s" },
        counts.records - counts.dead,
        counts.dead,
        per.join("; ")
    );
    Ok(())
}

/// `{"purpose":…,"topic":…,"key":…,"value":…,"headers":{…}}` on one line.
fn write_output(
    out: &mut impl Write,
    purpose: &str,
    topic: &str,
    o: &engine::Output,
) -> io::Result<()> {
    let mut headers = Map::new();
    for (k, v) in &o.headers {
        headers.insert(
            k.to_string(),
            Value::String(String::from_utf8_lossy(v).into_owned()),
        );
    }
    out.write_all(b"{\"purpose\":")?;
    serde_json::to_writer(&mut *out, purpose)?;
    out.write_all(b",\"topic\":")?;
    serde_json::to_writer(&mut *out, topic)?;
    out.write_all(b",\"key\":")?;
    match &o.key {
        Some(k) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(k))?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"value\":")?;
    out.write_all(&o.value)?;
    out.write_all(b",\"headers\":")?;
    serde_json::to_writer(&mut *out, &Value::Object(headers))?;
    out.write_all(b"}\n")
}
