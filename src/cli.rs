//! The command line: argument definitions and the offline commands.
//!
//! Commands read files and write to stdout/stderr here, around the pure core.
//! Errors are returned as one sentence saying what is wrong and what to do;
//! nothing here prints record content to stderr.

pub mod apply;
pub mod audit;
pub mod decrypt;
pub mod demo;
pub mod diff;
pub mod explain;
pub mod fixtures;
pub mod keys;
pub mod policy_test;
pub mod report;
pub mod run;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::policy::keys::{self as policy_keys, Keys};
use crate::policy::plan::{self, Compiled};
use crate::policy::{self, Policy};

#[derive(Debug, Parser)]
#[command(
    name = "custos",
    version,
    about = "Streaming data governance for Kafka: per-purpose fan-out, consent, erasure, retention, audit"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Policy commands
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Show, for every field path of every stream, its classes and what each purpose does with it and why
    Explain {
        /// The policy file
        file: PathBuf,
        /// Only this stream
        #[arg(long)]
        stream: Option<String>,
        /// Only this purpose
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long, value_enum, default_value_t = ExplainFormat::Table)]
        format: ExplainFormat,
        /// An Avro writer schema (.avsc) for the stream: every path of the
        /// schema, with where each class came from (needs --stream)
        #[arg(long)]
        schema: Option<PathBuf>,
    },
    /// Govern NDJSON events offline, exactly as the worker would, and print one line per emitted output
    Apply(apply::ApplyArgs),
    /// The data keys of the `encrypt` action (KEK rotation)
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Decrypt the `encrypt` action's values in output lines (NDJSON), for an authorised consumer; values of erased subjects come back as "[key destroyed]"
    Decrypt(decrypt::DecryptArgs),
    /// Run the worker
    Run {
        /// The worker configuration (TOML)
        #[arg(long, default_value = "custos.toml")]
        config: PathBuf,
    },
    /// Try custos: an embedded broker, example data, the real worker, and what each purpose received
    Demo,
    /// The audit trail: verify its hash chains, trace a data subject
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Avro: the schema of each purpose's output, derived from a writer schema
    Schema {
        #[command(subcommand)]
        command: schema::SchemaCommand,
    },
    /// A Confluent-compatible Schema Registry in memory (the REST subset
    /// custos and Confluent's clients use), to try Avro streams without
    /// one; keeps nothing on disk: for tests and demos, not production
    Registry {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
    /// Print the OpenLineage START event `custos run` sends for each stream (NDJSON), to preview or register lineage
    Lineage {
        /// The policy file
        file: PathBuf,
        /// The datasets' namespace (`kafka://host:port` of the cluster)
        #[arg(long, default_value = "kafka://localhost:9092")]
        namespace: String,
    },
    /// Record of processing activities (GDPR Art. 30) from the policy
    Report {
        /// The policy file
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy: exit 0, or print every error with its location and exit 1
    Check {
        /// The policy file
        file: PathBuf,
    },
    /// Compare what two policies disclose, per stream, path and purpose; exit 1 when anything widens
    Diff(diff::DiffArgs),
    /// Run fixture cases (input event, subject state, expected output per purpose) through the engine
    Test(policy_test::TestArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
}

/// A command failure: the message for stderr and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    pub code: i32,
    /// Lines already start with `file:line:col:`; print them without a prefix.
    pub located: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
            located: false,
        }
    }
}

/// The index of stream `name` of a policy, or the failure naming its streams.
///
/// # Errors
/// No stream has that name.
pub fn stream_index(policy: &Policy, name: &str) -> Result<usize, Failure> {
    policy
        .streams
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| {
            Failure::new(format!(
                "unknown stream `{name}`; the policy has: {}",
                policy
                    .streams
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Reads and validates a policy file.
///
/// # Errors
/// The file cannot be read, or the policy has errors (all of them, one per line).
pub fn load_policy(path: &Path) -> Result<Policy, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(format!(
            "cannot read policy file {}: {e}; check the path",
            path.display()
        ))
    })?;
    load_policy_text(&text, &path.display().to_string())
}

/// Validates a policy's text; `name` is the file name used in messages.
///
/// # Errors
/// The policy has errors (all of them, one per line).
pub fn load_policy_text(text: &str, name: &str) -> Result<Policy, Failure> {
    policy::load(text, name).map_err(|e| {
        let n = e.diagnostics.len();
        let mut f = Failure::new(format!(
            "{e}\n{name}: {n} error{} found; fix {} and run `custos policy check` again",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        ));
        f.located = true;
        f
    })
}

/// What to do with keys shorter than [`policy_keys::MIN_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortKeys {
    /// `custos run`: refuse to start.
    Refuse,
    /// Offline tools: warn on stderr.
    Warn,
}

/// Loads a policy, resolves its keys from the process environment and compiles it.
///
/// # Errors
/// Policy errors, missing secrets, or keys that do not compile.
pub fn load_compiled(path: &Path, short_keys: ShortKeys) -> Result<Compiled, Failure> {
    let policy = load_policy(path)?;
    let keys = Keys::resolve(&policy, |v| std::env::var(v).ok()).map_err(|errs| {
        Failure::new(
            errs.iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let short = keys.short();
    if !short.is_empty() {
        let list = short
            .iter()
            .map(|(k, n)| format!("`{k}` has {n} byte{}", plural(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "{}: key {list}; keys need at least {} bytes (e.g. `openssl rand -hex 32`), shorter ones make pseudonyms guessable",
            path.display(),
            policy_keys::MIN_KEY_BYTES
        );
        match short_keys {
            ShortKeys::Refuse => return Err(Failure::new(msg)),
            ShortKeys::Warn => eprintln!("custos: warning: {msg}"),
        }
    }
    plan::compile(Arc::new(policy), &keys)
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))
}

/// Runs a parsed command line.
///
/// # Errors
/// Returns the failure to print and the exit status.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => check(&file),
        Command::Policy {
            command: PolicyCommand::Diff(args),
        } => diff::run(&args),
        Command::Policy {
            command: PolicyCommand::Test(args),
        } => policy_test::run(&args),
        Command::Explain {
            file,
            stream,
            purpose,
            format,
            schema: None,
        } => {
            let policy = load_policy(&file)?;
            let text = explain::explain(&policy, stream.as_deref(), purpose.as_deref(), format)?;
            print!("{text}");
            Ok(())
        }
        Command::Explain {
            file,
            stream,
            purpose,
            format,
            schema: Some(schema),
        } => {
            let policy = load_policy(&file)?;
            let stream = stream
                .ok_or_else(|| Failure::new("--schema explains one stream: give --stream too"))?;
            let writer = schema::read_schema(&schema)?;
            let text =
                explain::explain_schema(&policy, &stream, purpose.as_deref(), format, &writer)?;
            print!("{text}");
            Ok(())
        }
        Command::Schema { command } => schema::run(&command),
        Command::Lineage { file, namespace } => schema::lineage(&file, &namespace),
        Command::Registry { listen } => schema::serve_registry(&listen),
        Command::Apply(args) => apply::run(&args),
        Command::Decrypt(args) => decrypt::run(&args),
        Command::Keys { command } => keys::run(&command),
        Command::Run { config } => run::run(&config),
        Command::Demo => demo::run(),
        Command::Audit { command } => audit::run(&command),
        Command::Report { file, format } => {
            let policy = load_policy(&file)?;
            print!("{}", report::report(&policy, format));
            Ok(())
        }
    }
}

fn check(file: &Path) -> Result<(), Failure> {
    let policy = load_policy(file)?;
    // Secrets are the environment's business, not the policy's: report them
    // without failing, since a policy is often checked where secrets are absent.
    match Keys::resolve(&policy, |v| std::env::var(v).ok()) {
        Err(errs) => {
            for e in errs {
                eprintln!("custos: warning: {e} (needed by `custos run` and `custos apply`)");
            }
        }
        Ok(found) => {
            for (k, n) in found.short() {
                eprintln!("custos: warning: key `{k}` has {n} byte{}; `custos run` refuses keys shorter than {} bytes (shorter ones make pseudonyms guessable)", plural(n), policy_keys::MIN_KEY_BYTES);
            }
        }
    }
    for w in policy
        .streams
        .iter()
        .flat_map(crate::policy::Stream::warnings)
    {
        eprintln!("custos: warning: {}: {w}", file.display());
    }
    let outputs: usize = policy.streams.iter().map(|s| s.outputs.len()).sum();
    println!(
        "{}: policy {} is valid: {} purpose{}, {} stream{}, {} output{}, {} invariant{}",
        file.display(),
        policy.id(),
        policy.purposes.len(),
        plural(policy.purposes.len()),
        policy.streams.len(),
        plural(policy.streams.len()),
        outputs,
        plural(outputs),
        policy.invariants.len(),
        plural(policy.invariants.len()),
    );
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
