//! custos: a streaming data-governance worker for Kafka.
//!
//! Every event is classified field by field, fanned out to one topic per
//! purpose with only what that purpose may see, suppressed for subjects
//! without consent or with an erasure request, and held to retention.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`policy`]: load, validate and compile the policy into plans (pure)
//! - [`classify`]: detectors for personal data in free text (pure)
//! - [`transform`]: redact, mask, pseudonymize, generalize (pure)
//! - [`engine`]: per-event governance over a plan (pure, no clock, no I/O)
//! - [`state`]: consent, objection and erasure state
//! - [`health`]: what `/readyz` reports
//! - [`audit`]: audit records, their hash chain and its verification (pure)
//! - [`lineage`]: OpenLineage run events with column lineage (pure)
//! - [`avro`]: Avro streams: wire format, derived schemas, the registry
//! - [`cli`]: the command line and the offline commands

// One audited exception (`kafka::worker::raw_headers`: header names as bytes
// through librdkafka, since rdkafka's safe API panics on non-UTF-8 names).
#![deny(unsafe_code)]

pub mod audit;
pub mod avro;
pub mod classify;
pub mod cli;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod health;
pub mod http;
pub mod kafka;
pub mod lineage;
pub mod pipeline;
pub mod policy;
pub mod state;
pub mod telemetry;
pub mod transform;
