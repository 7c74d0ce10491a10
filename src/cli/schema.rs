//! `custos schema derive` (a purpose's derived Avro schema, offline),
//! `custos registry` (the in-memory registry stand-in) and `custos lineage`
//! (the OpenLineage events of a policy, offline): commands over what the
//! policy alone decides, so they need no secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{load_policy, Failure};
use crate::avro::{self, standin::StandIn, Schema};
use crate::policy::keys::Keys;
use crate::policy::plan;

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print the schema a purpose's output gets for a writer schema
    Derive(DeriveArgs),
}

#[derive(Debug, Args)]
pub struct DeriveArgs {
    /// The policy file
    pub file: PathBuf,
    /// The (Avro) stream
    #[arg(long)]
    pub stream: String,
    /// The purpose whose output schema to print
    #[arg(long)]
    pub purpose: String,
    /// The writer schema (.avsc)
    #[arg(long)]
    pub schema: PathBuf,
}

/// Reads and parses an Avro schema file.
///
/// # Errors
/// Unreadable, or not a schema custos can govern.
pub fn read_schema(path: &Path) -> Result<Schema, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("cannot read schema {}: {e}", path.display())))?;
    Schema::parse(&text).map_err(|e| Failure::new(format!("{}: {e}", path.display())))
}

/// Runs a `schema` subcommand.
///
/// # Errors
/// Unknown stream or purpose, unreadable or unusable schema.
pub fn run(cmd: &SchemaCommand) -> Result<(), Failure> {
    let SchemaCommand::Derive(args) = cmd;
    let policy = load_policy(&args.file)?;
    let si = super::stream_index(&policy, &args.stream)?;
    // The derived schema does not depend on secret bytes: compile with
    // placeholders so that no secret is needed to print it.
    let keys = Keys::from_pairs(
        policy
            .keys
            .iter()
            .map(|(k, _)| (k.clone(), b"placeholder-not-a-secret".to_vec())),
    );
    let compiled =
        plan::compile(Arc::new(policy), &keys).map_err(|e| Failure::new(e.to_string()))?;
    let writer = read_schema(&args.schema)?;
    let sp = avro::compile_for_schema(&compiled, si, writer)
        .map_err(|e| Failure::new(format!("{}: {e}", args.schema.display())))?;
    let i = sp.plan.output_index(&args.purpose).map_err(Failure::new)?;
    let v: serde_json::Value =
        serde_json::from_str(&sp.derived[i].text).map_err(|e| Failure::new(e.to_string()))?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    eprintln!(
        "custos: subject {}-value, fingerprint {}",
        sp.plan.outputs[i].topic,
        sp.derived[i].fingerprint()
    );
    Ok(())
}

/// `custos lineage`: the START RunEvent of every stream, one per line.
///
/// # Errors
/// A bad policy.
pub fn lineage(file: &Path, namespace: &str) -> Result<(), Failure> {
    let policy = load_policy(file)?;
    let keys = placeholder_keys(&policy);
    let compiled =
        plan::compile(Arc::new(policy), &keys).map_err(|e| Failure::new(e.to_string()))?;
    let time = crate::audit::rfc3339_ms(chrono::Utc::now().timestamp_millis());
    for plan in &compiled.streams {
        // One run per stream, as `custos run` has.
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| Failure::new(format!("no randomness for a run id: {e}")))?;
        let run_id = crate::lineage::run_id(random);
        let run = crate::lineage::Run {
            policy: &compiled.policy.name,
            namespace,
            run_id: &run_id,
        };
        println!(
            "{}",
            crate::lineage::run_event(plan, &run, crate::lineage::EventType::Start, &time)
        );
    }
    Ok(())
}

/// Compiles without secrets: what depends only on the policy (derived
/// schemas, lineage) does not depend on key bytes.
fn placeholder_keys(policy: &crate::policy::Policy) -> Keys {
    Keys::from_pairs(
        policy
            .keys
            .iter()
            .map(|(k, _)| (k.clone(), b"placeholder-not-a-secret".to_vec())),
    )
}

/// Runs the registry stand-in until interrupted.
///
/// # Errors
/// The address cannot be bound.
pub fn serve_registry(listen: &str) -> Result<(), Failure> {
    let r = StandIn::start(listen)
        .map_err(|e| Failure::new(format!("cannot listen on {listen}: {e}")))?;
    eprintln!(
        "custos: schema registry stand-in on {} (in memory, for tests and demos; Ctrl-C stops it)",
        r.url()
    );
    loop {
        std::thread::park();
    }
}
