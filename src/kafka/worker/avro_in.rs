//! Avro streams in the worker: the schema id of each record, its compiled
//! plan (built once per id: writer schema fetched, derived schemas
//! registered), and the pause-and-retry of partitions while the registry
//! cannot be reached.
//!
//! Failure handling (fail closed, nothing lost):
//! - registry unreachable, timed out or 5xx: the record is not processed;
//!   its partition is paused and rewound to it, and resumed with backoff
//!   (1 s doubling to 30 s). Logged once per outage, counted, `/readyz`
//!   not ready meanwhile; while the backoff runs, no record waits on the
//!   registry again. Records of schemas already known keep flowing.
//! - unknown schema id (404), a schema custos cannot use (invalid, recursive,
//!   a class the taxonomy lacks), no magic byte, bytes that do not decode:
//!   dead letter with reason `schema`; remembered per id, so an unknown id
//!   costs one request.
//! - a derived schema the registry refuses as incompatible: the worker stops,
//!   naming the subject, its version and the registry's message; so do
//!   refused credentials (401/403), a configuration error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StreamCtx;
use crate::audit::StreamAudit;
use crate::avro::registry::{Registry, RegistryError};
use crate::avro::{self, Schema, SchemaPlan};
use crate::config::Config;
use crate::kafka::offsets::Tp;
use crate::kafka::WorkerError;
use crate::policy::plan::Compiled;
use crate::policy::Format;
use crate::telemetry::Metrics;

/// One writer schema of one stream, ready for records.
pub(super) struct AvroCtx {
    pub sp: SchemaPlan,
    /// Registered id of each output's derived schema.
    pub ids: Vec<u32>,
    pub ctx: StreamCtx,
}

pub(super) enum Lookup {
    Ready(Arc<AvroCtx>),
    /// Dead-letter the record (`schema`) with this reason.
    Dead(String),
    /// The registry is unavailable: pause and rewind the partition.
    Retry,
}

/// A schema's plan, or why its records are dead-lettered and since when.
type PlanEntry = Result<Arc<AvroCtx>, (String, Instant)>;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// An unknown schema id is asked again after this long (a registry replica
/// may not have had it yet).
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(super) struct AvroStreams {
    registry: Registry,
    /// Per (stream, schema id): the plan, or why its records are dead-lettered (and since when).
    plans: HashMap<(usize, u32), PlanEntry>,
    /// Paused partitions and the offset each was rewound to.
    paused: HashMap<Tp, i64>,
    backoff: Duration,
    retry_at: Option<Instant>,
    down: bool,
}

/// The registry client for a policy with Avro streams (`None` without any).
///
/// # Errors
/// Avro streams without `schema_registry.url`, an unreadable password or
/// certificate file.
pub(super) fn open(cfg: &Config, compiled: &Compiled) -> Result<Option<AvroStreams>, WorkerError> {
    let Some(stream) = compiled
        .policy
        .streams
        .iter()
        .find(|s| s.format == Format::Avro)
    else {
        return Ok(None);
    };
    let sr = &cfg.schema_registry;
    let url = sr.url.as_deref().ok_or_else(|| {
        WorkerError::Registry(format!(
            "stream `{}` is avro: set schema_registry.url (a Confluent-compatible Schema Registry)",
            stream.name
        ))
    })?;
    let password = match sr.password.as_ref().and_then(|p| p.source()) {
        Some(src) => Some(
            crate::policy::keys::read_secret("schema_registry.password", &src, |v| {
                std::env::var(v).ok()
            })
            .map_err(|e| WorkerError::Registry(e.to_string()))?,
        ),
        None => None,
    };
    let registry = Registry::new(sr, url, password.as_deref()).map_err(WorkerError::Registry)?;
    Ok(Some(AvroStreams {
        registry,
        plans: HashMap::new(),
        paused: HashMap::new(),
        backoff: BACKOFF_MIN,
        retry_at: None,
        down: false,
    }))
}

impl AvroStreams {
    /// The compiled plan for a record of stream `si` (its value in wire format).
    ///
    /// # Errors
    /// Only a registration refused as incompatible (fatal).
    pub fn lookup(
        &mut self,
        compiled: &Compiled,
        si: usize,
        value: &[u8],
        metrics: &Metrics,
        health: &crate::health::Health,
    ) -> Result<Lookup, WorkerError> {
        let id = match avro::split_wire(value) {
            Ok((id, _)) => id,
            Err(why) => return Ok(Lookup::Dead(why)),
        };
        match self.plans.get(&(si, id)) {
            Some(Ok(c)) => return Ok(Lookup::Ready(c.clone())),
            Some(Err((why, at))) if at.elapsed() < UNKNOWN_TTL => {
                return Ok(Lookup::Dead(why.clone()))
            }
            _ => {}
        }
        if self.down && self.retry_at.is_some() {
            // Down and its backoff not over: do not block the loop on it again.
            return Ok(Lookup::Retry);
        }
        match self.build(compiled, si, id, metrics) {
            Ok(c) => {
                self.up(health);
                let c = Arc::new(c);
                self.plans.insert((si, id), Ok(c.clone()));
                Ok(Lookup::Ready(c))
            }
            Err(RegistryError::Unavailable(why)) => {
                metrics
                    .registry_errors
                    .with_label_values(&["unavailable"])
                    .inc();
                if !self.down {
                    tracing::warn!(reason = %why, "schema registry unreachable: pausing the partitions that need a new schema, retrying with backoff; not ready");
                    self.down = true;
                    health.registry_up(false);
                }
                Ok(Lookup::Retry)
            }
            Err(RegistryError::NotFound(why)) => {
                metrics
                    .registry_errors
                    .with_label_values(&["not_found"])
                    .inc();
                self.up(health);
                tracing::warn!(schema_id = id, reason = %why, "unknown schema id: its records go to the dead-letter topic");
                self.plans
                    .insert((si, id), Err((why.clone(), Instant::now())));
                Ok(Lookup::Dead(why))
            }
            Err(e @ (RegistryError::Incompatible { .. } | RegistryError::Unauthorized { .. })) => {
                Err(WorkerError::Registry(e.to_string()))
            }
            Err(RegistryError::Refused { status, message }) => {
                metrics
                    .registry_errors
                    .with_label_values(&["refused"])
                    .inc();
                self.up(health);
                let why = format!("schema id {id}: {message} (registry status {status})");
                tracing::warn!(schema_id = id, reason = %why, "schema unusable: its records go to the dead-letter topic");
                self.plans
                    .insert((si, id), Err((why.clone(), Instant::now())));
                Ok(Lookup::Dead(why))
            }
        }
    }

    fn up(&mut self, health: &crate::health::Health) {
        if self.down {
            tracing::info!("schema registry reachable again");
            self.down = false;
            health.registry_up(true);
        }
        self.backoff = BACKOFF_MIN;
    }

    fn build(
        &self,
        compiled: &Compiled,
        si: usize,
        id: u32,
        metrics: &Metrics,
    ) -> Result<AvroCtx, RegistryError> {
        let text = self.registry.schema_by_id(id)?;
        let unusable = |why: String| RegistryError::Refused {
            status: 200,
            message: why,
        };
        let schema = Schema::parse(&text).map_err(unusable)?;
        let sp = avro::compile_for_schema(compiled, si, schema).map_err(unusable)?;
        let mut ids = Vec::with_capacity(sp.derived.len());
        for (o, d) in sp.plan.outputs.iter().zip(&sp.derived) {
            ids.push(
                self.registry
                    .register(&format!("{}-value", o.topic), &d.text)?,
            );
        }
        tracing::info!(stream = %sp.plan.name, schema_id = id, fingerprint = %sp.writer.fingerprint(), derived_ids = ?ids, "new writer schema compiled");
        let ctx = StreamCtx {
            metrics: metrics.stream(&sp.plan),
            topics: sp
                .plan
                .outputs
                .iter()
                .map(|o| Arc::from(o.topic.as_str()))
                .collect(),
            audit: StreamAudit::new(&sp.plan),
        };
        Ok(AvroCtx { sp, ids, ctx })
    }

    /// Remembers that `tp` was paused and rewound to `offset`.
    pub fn paused(&mut self, tp: Tp, offset: i64) {
        self.paused.insert(tp, offset);
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Forgets a partition's pause: it was (re)assigned and starts from its
    /// committed offset.
    pub fn forget(&mut self, tp: &Tp) {
        self.paused.remove(tp);
    }

    /// At the end of a backoff: the partitions to resume (their records
    /// come again from the rewind point and ask the registry again). With
    /// none left paused, the registry is probed so that `/readyz` recovers.
    pub fn due(&mut self, metrics: &Metrics, health: &crate::health::Health) -> Vec<Tp> {
        match self.retry_at {
            Some(t) if Instant::now() >= t => {
                self.retry_at = None;
                if self.paused.is_empty() && self.down {
                    if self.registry.probe().is_ok() {
                        self.up(health);
                    } else {
                        metrics
                            .registry_errors
                            .with_label_values(&["unavailable"])
                            .inc();
                        self.retry_at = Some(Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    }
                }
                self.paused.drain().map(|(tp, _)| tp).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether `tp` is paused (its records are not processed).
    pub fn is_paused(&self, tp: &Tp) -> bool {
        self.paused.contains_key(tp)
    }
}

/// Encodes a governed JSON output with its derived schema, in wire format:
/// from `made`, the tape the walk built of it, or else from a tape of it
/// made in `tape`.
pub(super) fn encode_output(
    c: &AvroCtx,
    output: usize,
    json: &[u8],
    made: Option<&crate::codec::Tape>,
    tape: &mut crate::codec::Tape,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(json.len());
    avro::wire_header(c.ids[output], &mut out);
    let ty = &c.sp.derived[output].ty;
    match made {
        Some(made) => avro::value::encode_tape(ty, json, made, &mut out)?,
        None => avro::value::encode_json(ty, json, tape, &mut out)?,
    }
    Ok(out)
}
