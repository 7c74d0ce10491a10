//! `custos apply`: the worker's governance run offline over NDJSON.
//!
//! Each input line is one event (or, with `--envelope`, a record envelope
//! `{"key":…,"value":…,"headers":{…},"timestamp":…}`). Output: one line per
//! emitted output, in input order, purposes in policy order. Bad lines are
//! dead-lettered (reported on stderr by number and reason only, written whole
//! to `--dead-letter`), and processing goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use serde_json::{Map, Value};

use super::{load_compiled, Failure};
use crate::audit::{self, AuditKey, Chains, StreamAudit};
use crate::avro;
use crate::codec::{self, Kind, Tape};
use crate::crypto::{KeyRing, LocalKeys};
use crate::engine::{self, DeadLetterReason, Outcome, Scratch, Suppression};
use crate::pipeline;
use crate::policy::keys::{read_secret, KeyError};
use crate::policy::Format;
use crate::policy::KeySource;
use crate::state::{MemoryState, SubjectState, WithKeys};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Json,
    Avro,
}

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
    /// Avro streams: the writer schema (.avsc) the input values follow, in
    /// Avro's JSON encoding; outputs are printed in the same encoding with
    /// `"schema"`, the fingerprint of the purpose's derived schema
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// The input's format; default: the stream's (`avro` needs `--schema`)
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Data keys for `encrypt`: NDJSON of keys-topic records
    /// (`{"key":…,"value":{…}|null}`) read first; the keys this run makes are
    /// appended, so `custos decrypt --keys FILE` can read the outputs.
    /// Without it, keys live for this run only. Protect it like the KEK.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Write the audit records (one per input line, hash-chained) here as NDJSON.
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

/// The data keys of `--keys FILE` (or of this run only), when the policy encrypts.
fn local_keys(
    compiled: &crate::policy::plan::Compiled,
    path: Option<&PathBuf>,
) -> Result<Option<LocalKeys>, Failure> {
    if !compiled.encrypts() {
        return Ok(None);
    }
    // Subjects are named on the keys topic under a key derived from the
    // audit key: the same as `custos run`'s. A keys file kept across runs
    // needs the same one every time (else a subject gets a new key per run
    // and an erasure cannot find the old ones).
    let src = KeySource::Env("CUSTOS_AUDIT_KEY".into());
    let audit = match read_secret("audit.key", &src, |v| std::env::var(v).ok()) {
        Ok(bytes) => AuditKey::new(&bytes),
        Err(e) if path.is_some() => {
            return Err(Failure::new(format!(
                "{e}; --keys needs CUSTOS_AUDIT_KEY: the keys file names subjects by an HMAC under a key derived from it, which must be the same on every run"
            )))
        }
        Err(_) => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b)
                .map_err(|e| Failure::new(format!("no randomness for a one-time key: {e}")))?;
            AuditKey::new(&b)
        }
    };
    let ring = KeyRing::new(compiled.keks(), &audit);
    let keys = LocalKeys::new(
        ring,
        crate::audit::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
    );
    let Some(path) = path else {
        eprintln!("custos: warning: the policy encrypts and no --keys FILE is given: the data keys live for this run only, nothing it encrypts can be decrypted later");
        return Ok(Some(keys));
    };
    let text = crate::cli::decrypt::read_keys_file(path)?.unwrap_or_default();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (key, value) = crate::cli::decrypt::keys_line(line)
            .map_err(|e| Failure::new(format!("{}:{}: {e}", path.display(), i + 1)))?;
        keys.apply(key.as_bytes(), value.as_deref())
            .map_err(|e| Failure::new(format!("{}:{}: {e}", path.display(), i + 1)))?;
    }
    Ok(Some(keys))
}

/// The subjects an erasure file erases (for crypto-shredding the keys file).
fn erased_subjects(path: &Path) -> Result<Vec<String>, Failure> {
    let text = std::fs::read(path).map_err(|e| {
        Failure::new(format!(
            "cannot read {}: {e}; check the path",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        for s in crate::state::erasure_request(None, Some(line)).0 {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Appends keys-topic records to `--keys FILE` (created readable by the owner only).
fn append_keys(path: &Path, records: &[(String, Option<Vec<u8>>)]) -> Result<(), Failure> {
    if records.is_empty() {
        return Ok(());
    }
    let err =
        |e: io::Error| Failure::new(format!("cannot write keys file {}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path).map_err(err)?;
    // A file whose last line has no newline would get the first record
    // appended to that line.
    let ends_in_newline = {
        use std::io::{Seek, SeekFrom};
        let mut r = &file;
        let len = r.seek(SeekFrom::End(0)).map_err(err)?;
        len == 0 || {
            r.seek(SeekFrom::End(-1)).map_err(err)?;
            let mut last = [0u8; 1];
            r.read_exact(&mut last).map_err(err)?;
            last[0] == b'\n'
        }
    };
    let mut f = BufWriter::new(file);
    if !ends_in_newline {
        f.write_all(b"\n").map_err(err)?;
    }
    for (key, value) in records {
        let value: Value = match value {
            None => Value::Null,
            Some(v) => serde_json::from_slice(v).unwrap_or(Value::Null),
        };
        let line = serde_json::json!({ "key": key, "value": value });
        writeln!(f, "{line}").map_err(err)?;
    }
    f.flush().map_err(err)
}

fn read_state(
    policy: &crate::policy::Policy,
    consent: Option<&PathBuf>,
    erasure: Option<&PathBuf>,
) -> Result<MemoryState, Failure> {
    let mut state = MemoryState::for_policy(policy);
    for (path, is_consent) in [(consent, true), (erasure, false)] {
        let Some(path) = path else { continue };
        let text = std::fs::read(path).map_err(|e| {
            Failure::new(format!(
                "cannot read {}: {e}; check the path",
                path.display()
            ))
        })?;
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let r = if is_consent {
                state.apply_consent(None, Some(line))
            } else {
                state.apply_erasure(None, Some(line))
            };
            if let Ok(a) = &r {
                warn_applied(path, i + 1, a);
            }
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

/// Says on stderr what a consent or erasure line did that is not plain.
fn warn_applied(path: &std::path::Path, line: usize, a: &crate::state::Applied) {
    let at = format!("{}:{line}", path.display());
    if a.unknown_purposes > 0 {
        eprintln!(
            "custos: warning: {at}: {} purpose(s) the policy does not have: ignored, never a grant",
            a.unknown_purposes
        );
    }
    if a.duplicate_keys {
        eprintln!(
            "custos: warning: {at}: duplicate JSON keys: read as withdrawal of every consent"
        );
    }
    if a.mismatch {
        eprintln!("custos: warning: {at}: the record names more than one subject: every consent of each withdrawn");
    }
}

/// Creates (or truncates) a file only its owner can read and write.
fn private_file(path: &std::path::Path) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        // An existing file keeps its mode on open: tighten it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// One input record decoded from an envelope line.
struct Envelope {
    key: Option<Vec<u8>>,
    /// `None`: a tombstone (dead-lettered as the worker does).
    value: Option<Vec<u8>>,
    headers: crate::pipeline::RawHeaders,
    timestamp: Option<i64>,
}

/// Decodes an envelope line with the same strict parser as event values
/// (duplicate keys anywhere, in the envelope or its value, are refused).
fn decode_envelope(line: &[u8], tape: &mut Tape) -> Result<Envelope, String> {
    tape.parse(line)
        .map_err(|e| format!("envelope is not valid JSON: {e}"))?;
    if tape.root().map(|t| t.kind) != Some(Kind::Object) {
        return Err("envelope is not a JSON object".into());
    }
    let text = |i: usize| -> Vec<u8> {
        let t = &tape.toks[i];
        match t.kind {
            Kind::Str | Kind::StrEsc => codec::string(line, t).into_owned().into_bytes(),
            _ => codec::raw_json(line, t).to_vec(),
        }
    };
    let mut env = Envelope {
        key: None,
        value: None,
        headers: Vec::new(),
        timestamp: None,
    };
    let mut has_value = false;
    for (k, v) in tape.members(0) {
        let kind = tape.toks[v].kind;
        match &*codec::string(line, &tape.toks[k]) {
            "key" => env.key = (kind != Kind::Null).then(|| text(v)),
            "value" => {
                has_value = true;
                env.value = (kind != Kind::Null).then(|| text(v));
            }
            "headers" => match kind {
                Kind::Null => {}
                Kind::Object => {
                    for (hk, hv) in tape.members(v) {
                        let name = codec::string(line, &tape.toks[hk]).into_owned();
                        let value = (tape.toks[hv].kind != Kind::Null).then(|| text(hv));
                        env.headers.push((name.into_bytes(), value));
                    }
                }
                _ => return Err("envelope headers must be an object of strings".into()),
            },
            "timestamp" => {
                if kind != Kind::Null {
                    let raw = text(v);
                    let value: Value = if matches!(kind, Kind::Str | Kind::StrEsc) {
                        Value::String(String::from_utf8_lossy(&raw).into_owned())
                    } else {
                        serde_json::from_slice(&raw).unwrap_or(Value::Null)
                    };
                    env.timestamp = Some(
                        engine::parse_time(&value)
                            .ok_or("envelope timestamp is neither epoch millis nor RFC 3339")?,
                    );
                }
            }
            "partition" | "offset" | "topic" => {}
            _ => {
                return Err(
                    "envelope has an unknown member; use key, value, headers, timestamp".into(),
                )
            }
        }
    }
    if !has_value {
        return Err("envelope has no `value` member (a tombstone is `\"value\": null`)".into());
    }
    Ok(env)
}

/// Reads one line into `buf` (without its `\n`), reading at most `max`
/// bytes of it: the rest of a longer line is skipped, never held in memory.
/// `Ok(None)` at the end of input, `Ok(Some(false))` for a line over `max`.
fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut fits = true;
    let mut any = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if fits && buf.len() + part.len() <= max {
            buf.extend_from_slice(part);
        } else {
            fits = false;
            buf.clear();
        }
        let used = done.unwrap_or(part.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(fits));
        }
    }
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
    let compiled = load_compiled(&args.file, super::ShortKeys::Warn)?;
    let plan = &compiled.streams[super::stream_index(&compiled.policy, &args.stream)?];
    let avro = avro_plan(&compiled, args)?;
    let plan = avro.as_ref().map_or(plan, |sp| &sp.plan);
    let only = match &args.purpose {
        None => None,
        Some(p) => Some(plan.output_index(p).map_err(Failure::new)?),
    };
    let memory = read_state(
        &compiled.policy,
        args.consent.as_ref(),
        args.erasure.as_ref(),
    )?;
    let local_keys = local_keys(&compiled, args.keys.as_ref())?;
    // An erasure destroys the subject's data keys (crypto-shredding), as the
    // worker does: tombstones are appended to the keys file.
    if let (Some(keys), Some(erasure)) = (&local_keys, &args.erasure) {
        keys.shred(&erased_subjects(erasure)?);
    }
    let with_keys = local_keys.as_ref().map(|k| WithKeys {
        state: &memory,
        keys: k,
    });
    let state: &dyn SubjectState = match &with_keys {
        Some(w) => w,
        None => &memory,
    };
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
        // Dead letters hold raw input: readable by the owner only.
        Some(p) => Some(BufWriter::new(private_file(p).map_err(|e| {
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

    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut offset = 0i64;
    let mut env_tape = Tape::default();
    let limits = engine::Limits::default();
    // An envelope escapes its value, which can double its length.
    let max_line = if args.envelope {
        2 * limits.max_record_bytes + 65_536
    } else {
        limits.max_record_bytes
    };
    loop {
        let fits = match read_line_bounded(&mut reader, &mut line, max_line)
            .map_err(|e| Failure::new(format!("cannot read input: {e}")))?
        {
            None => break,
            Some(fits) => fits,
        };
        line_no += 1;
        let mut raw: &[u8] = &line;
        if line_no == 1 {
            // A byte order mark is not part of the first record.
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if fits && raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        counts.records += 1;
        let this_offset = offset;
        offset += 1;
        let source = engine::source_of(&plan.topic, 0, this_offset);

        let cx = pipeline::Context {
            policy: &policy_id,
            worker: "custos-apply",
            now_ms,
            limits,
        };
        // A plain line is a record produced at `--now`; so is a line that is
        // not an envelope (it is dead-lettered as it is).
        let plain = |value| plain_input(&plan.topic, this_offset, now_ms, value);
        let audited = audit_out.is_some();
        let audit_with = audit_out.as_ref().map(|(_, key, sa, _)| (sa, key));
        let processed = if !fits {
            let detail = format!("line longer than {max_line} bytes (not read into memory)");
            pipeline::refuse(
                plan,
                &plain(raw),
                DeadLetterReason::TooLarge,
                detail,
                &cx,
                audited,
            )
        } else if args.envelope {
            match decode_envelope(raw, &mut env_tape) {
                Ok(env) => {
                    let input = pipeline::Input {
                        timestamp: env.timestamp,
                        key: env.key.as_deref(),
                        value: env.value.as_deref(),
                        headers: &env.headers,
                        ..plain(raw)
                    };
                    govern(
                        plan,
                        avro.as_ref(),
                        audit_with,
                        &input,
                        state,
                        &cx,
                        &mut scratch,
                    )
                }
                Err(detail) => pipeline::refuse(
                    plan,
                    &plain(raw),
                    DeadLetterReason::Decode,
                    detail,
                    &cx,
                    audited,
                ),
            }
        } else {
            govern(
                plan,
                avro.as_ref(),
                audit_with,
                &plain(raw),
                state,
                &cx,
                &mut scratch,
            )
        };

        if let (Some((w, key, _, chains)), Some(record)) = (audit_out.as_mut(), &processed.audit) {
            let chain = audit::chain_name(&plan.topic, 0);
            let (text, _) = chains.append(key, &chain, record);
            w.write_all(text.as_bytes()).map_err(io_err)?;
            w.write_all(b"\n").map_err(io_err)?;
        }
        for (i, o) in processed.deltas().suppressions().enumerate() {
            match o {
                None => counts.emitted[i] += 1,
                Some(s) => {
                    let si = Suppression::ALL.iter().position(|x| *x == s).unwrap_or(0);
                    counts.suppressed[i][si] += 1;
                }
            }
        }
        match processed.written {
            pipeline::Written::DeadLetter(d) => {
                counts.dead += 1;
                eprintln!(
                    "custos: line {line_no} ({source}) dead-lettered: {} ({})",
                    d.reason.code(),
                    d.detail
                );
                if let Some(w) = dl_out.as_mut() {
                    write_dead_letter(w, &d, &source).map_err(io_err)?;
                }
            }
            pipeline::Written::Governed { governed, .. } => {
                for (i, outcome) in governed.outcomes.into_iter().enumerate() {
                    if let Outcome::Emitted(o) = outcome {
                        if only.is_some_and(|p| p != i) {
                            continue;
                        }
                        let fingerprint = avro.as_ref().map(|sp| sp.derived[i].fingerprint());
                        write_output(
                            &mut out,
                            &plan.outputs[i].name,
                            &plan.outputs[i].topic,
                            &o,
                            fingerprint.as_deref(),
                        )
                        .map_err(io_err)?;
                    }
                }
            }
        }
    }
    out.flush().map_err(io_err)?;
    if let (Some(keys), Some(path)) = (&local_keys, &args.keys) {
        append_keys(path, &keys.take_created())?;
    }
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

/// The Avro plan for `--schema`, when the input is Avro.
fn avro_plan(
    compiled: &crate::policy::plan::Compiled,
    args: &ApplyArgs,
) -> Result<Option<avro::SchemaPlan>, Failure> {
    let si = super::stream_index(&compiled.policy, &args.stream)?;
    let stream_avro = compiled.policy.streams[si].format == Format::Avro;
    let is_avro = match args.format {
        Some(f) => f == InputFormat::Avro,
        None => stream_avro,
    };
    if !is_avro {
        if stream_avro {
            return Err(Failure::new(format!(
                "stream `{}` is avro; `--format json` governs it as JSON only if you mean it: drop `--format json` and give `--schema FILE.avsc`",
                args.stream
            )));
        }
        return Ok(None);
    }
    let path = args.schema.as_ref().ok_or_else(|| {
        Failure::new(format!(
            "stream `{}` is avro: give its writer schema with `--schema FILE.avsc` (input values in Avro's JSON encoding)",
            args.stream
        ))
    })?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("cannot read schema {}: {e}", path.display())))?;
    let schema =
        avro::Schema::parse(&text).map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    avro::compile_for_schema(compiled, si, schema)
        .map(Some)
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))
}

/// Governs one input: as JSON, or (Avro) its value read in Avro's JSON
/// encoding with the writer schema and each output written in it with the
/// purpose's derived schema.
fn govern(
    plan: &crate::policy::plan::StreamPlan,
    avro: Option<&avro::SchemaPlan>,
    audit_with: Option<(&StreamAudit, &AuditKey)>,
    input: &pipeline::Input<'_>,
    state: &dyn SubjectState,
    cx: &pipeline::Context<'_>,
    scratch: &mut Scratch,
) -> pipeline::Processed {
    let Some(sp) = avro else {
        return pipeline::process(plan, audit_with, input, state, cx, scratch);
    };
    let json = input.value.map(|v| {
        serde_json::from_slice::<Value>(v)
            .map_err(|e| format!("not valid JSON: {e}"))
            .and_then(|j| avro::value::from_avro_json(&sp.writer.root, &j))
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .map_err(|e| format!("the value does not fit the writer schema: {e}"))
    });
    let decoded = match &json {
        None => Ok(&[][..]),
        Some(Ok(b)) => Ok(b.as_slice()),
        Some(Err(e)) => Err((DeadLetterReason::Schema, e.clone())),
    };
    let mut encode =
        |o: usize, j: &[u8], _: Option<&crate::engine::Tape>| -> Result<Vec<u8>, String> {
            let v: Value = serde_json::from_slice(j).map_err(|e| e.to_string())?;
            let aj = avro::value::to_avro_json(&sp.derived[o].ty, &v)?;
            serde_json::to_vec(&aj).map_err(|e| e.to_string())
        };
    pipeline::process_decoded(
        plan,
        audit_with,
        input,
        decoded,
        state,
        cx,
        scratch,
        &mut encode,
    )
}

/// A line read as a record produced at `now_ms`, without key or headers.
fn plain_input<'a>(
    topic: &'a str,
    offset: i64,
    now_ms: i64,
    value: &'a [u8],
) -> pipeline::Input<'a> {
    pipeline::Input {
        topic,
        partition: 0,
        offset,
        timestamp: Some(now_ms),
        key: None,
        value: Some(value),
        headers: &[],
    }
}

/// `{"reason":…,"detail":…,"source":…,"key":…,"value"|"value_base64":…,"headers":{…}}`
/// on one line: the dead-letter record as the worker would produce it.
fn write_dead_letter(
    w: &mut impl Write,
    d: &pipeline::DeadLetterRecord,
    source: &str,
) -> io::Result<()> {
    let text = |b: &[u8]| Value::String(String::from_utf8_lossy(b).into_owned());
    let mut rec = Map::new();
    rec.insert("reason".into(), Value::String(d.reason.code().into()));
    rec.insert("detail".into(), Value::String(d.detail.clone()));
    rec.insert("source".into(), Value::String(source.into()));
    rec.insert("key".into(), d.key.as_deref().map_or(Value::Null, text));
    match d.value.as_deref() {
        Some(v) => {
            let (name, v) = text_or_b64(v);
            rec.insert(name.into(), v);
        }
        None => {
            rec.insert("value".into(), Value::Null);
        }
    }
    let headers: Map<String, Value> = d
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_deref().map_or(Value::Null, text)))
        .collect();
    rec.insert("headers".into(), Value::Object(headers));
    serde_json::to_writer(&mut *w, &Value::Object(rec))?;
    w.write_all(b"\n")
}

/// `{"purpose":…,"topic":…,"key":…,"value":…,"headers":{…}}` on one line.
fn write_output(
    out: &mut impl Write,
    purpose: &str,
    topic: &str,
    o: &engine::Output,
    schema: Option<&str>,
) -> io::Result<()> {
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
    if let Some(fp) = schema {
        out.write_all(b",\"schema\":")?;
        serde_json::to_writer(&mut *out, fp)?;
    }
    out.write_all(b",\"headers\":")?;
    let names_unique = o
        .headers
        .iter()
        .enumerate()
        .all(|(i, (k, _))| o.headers[..i].iter().all(|(j, _)| j != k));
    if names_unique {
        // Written straight out: no map is built per output line.
        out.write_all(b"{")?;
        for (i, (k, v)) in o.headers.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, k.as_ref())?;
            out.write_all(b":")?;
            serde_json::to_writer(&mut *out, &String::from_utf8_lossy(v))?;
        }
        out.write_all(b"}")?;
    } else {
        // A name twice (an input with repeated headers): one JSON member
        // per name, the last value, as a map keeps it.
        let mut headers = Map::new();
        for (k, v) in &o.headers {
            headers.insert(
                k.to_string(),
                Value::String(String::from_utf8_lossy(v).into_owned()),
            );
        }
        serde_json::to_writer(&mut *out, &Value::Object(headers))?;
    }
    out.write_all(b"}\n")
}
