//! `custos run`: load config and policy, refuse to start on any problem, then
//! run the worker with HTTP endpoints until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{load_compiled, Failure};
use crate::config::{env_overrides, Config, LogFormat};
use crate::kafka::embedded::Embedded;
use crate::kafka::worker::{topic_specs, Control, Options, Worker};
use crate::telemetry::Metrics;

/// Sets up logging: JSON or text on stderr, level from `RUST_LOG` (default info).
pub fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs `custos run --config FILE`.
///
/// # Errors
/// Bad config or policy, missing secrets, startup or fatal worker errors.
pub fn run(config_path: &Path) -> Result<(), Failure> {
    let cfg = Config::load(config_path, env_overrides(std::env::vars())).map_err(|e| {
        Failure::new(format!(
            "{e}; fix {} (or the CUSTOS_* variable) and start again",
            config_path.display()
        ))
    })?;
    init_tracing(cfg.log.format, "info");
    let compiled = Arc::new(load_compiled(&cfg.policy, super::ShortKeys::Refuse)?);
    for w in compiled
        .policy
        .streams
        .iter()
        .flat_map(crate::policy::Stream::warnings)
    {
        tracing::warn!("{}: {w}", cfg.policy.display());
    }
    check_topic_roles(&compiled.policy, &cfg)?;
    let audit_key = super::audit::audit_key(&cfg)?;
    let metrics = Metrics::new();
    metrics
        .policy_info
        .with_label_values(&[&compiled.policy.name, &compiled.policy.digest])
        .set(1);

    // The embedded broker lives as long as this function. It starts empty,
    // so its consent and erasure topics are created empty too: nothing can
    // be forgotten on a broker that has never held anything.
    let (embedded, bootstrap) = if cfg.embedded() {
        let e = Embedded::start(1)
            .map_err(|e| Failure::new(format!("cannot start the embedded broker: {e}")))?;
        let subject_topics = [
            &compiled.policy.consent_topic,
            &compiled.policy.erasure_topic,
        ];
        for t in subject_topics.into_iter().flatten() {
            e.create_topic(t, 1)
                .map_err(|e| Failure::new(e.to_string()))?;
        }
        for s in &compiled.streams {
            e.create_topic(&s.topic, 3)
                .map_err(|e| Failure::new(e.to_string()))?;
        }
        for spec in topic_specs(&compiled, &cfg, |_| 3) {
            e.create_topic(&spec.name, spec.partitions)
                .map_err(|e| Failure::new(e.to_string()))?;
        }
        let b = e.bootstrap_servers();
        tracing::warn!(bootstrap = %b, "using the embedded in-memory broker: for trying custos out only");
        (Some(e), b)
    } else {
        (None, cfg.kafka.bootstrap_servers.clone())
    };

    let control = Control::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the runtime: {e}")))?;
    {
        let stop = control.stop.clone();
        runtime.spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: draining");
            stop.store(true, Ordering::SeqCst);
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&cfg.http.listen))
            .map_err(|e| {
                Failure::new(format!(
                    "cannot listen on {} ({e}); free the port or set [http] listen",
                    cfg.http.listen
                ))
            })?;
        tracing::info!(listen = %cfg.http.listen, "http endpoints up");
        let (m, health) = (metrics.clone(), control.health.clone());
        runtime.spawn(async move {
            if let Err(e) = crate::http::serve(listener, m, health).await {
                tracing::error!(error = %e, "http endpoints failed");
            }
        });
    }

    let worker = Worker {
        config: cfg.clone(),
        bootstrap,
        compiled,
        metrics,
        options: Options {
            skip_topic_management: embedded.is_some(),
            ..Options::default()
        },
        control,
        audit_key,
    };
    let result = worker.run();
    runtime.shutdown_background();
    drop(embedded);
    result.map_err(|e| Failure::new(format!("{e}")))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Refuses a config and policy that name one topic for two jobs where that
/// would loop or mix data: a topic custos writes (outputs, audit, lineage,
/// dead letters) must not be one it reads (inputs, consent, erasure), and
/// the audit, lineage and dead-letter topics are each custos's alone (a
/// dead-letter topic that is an input would feed raw records back in; an
/// output that is the audit topic would break the chain). Two streams may
/// share an output topic.
fn check_topic_roles(policy: &crate::policy::Policy, cfg: &Config) -> Result<(), Failure> {
    // (topic, role, written by custos, custos's own)
    let mut roles: Vec<(&str, String, bool, bool)> = Vec::new();
    for s in &policy.streams {
        roles.push((
            &s.topic,
            format!("the input of stream `{}`", s.name),
            false,
            false,
        ));
        for (purpose, topic) in &s.outputs {
            let role = format!("the `{purpose}` output of stream `{}`", s.name);
            roles.push((topic, role, true, false));
        }
    }
    if let Some(t) = &policy.consent_topic {
        roles.push((t, "the consent topic".into(), false, false));
    }
    if let Some(t) = &policy.erasure_topic {
        roles.push((t, "the erasure topic".into(), false, false));
    }
    for (t, key) in [
        (&cfg.audit.topic, "audit.topic"),
        (&cfg.lineage.topic, "lineage.topic"),
        (&cfg.dead_letter.topic, "dead_letter.topic"),
        (&cfg.encryption.keys_topic, "encryption.keys_topic"),
    ] {
        roles.push((t, format!("`{key}`"), true, true));
    }
    for (i, (topic, role, written, own)) in roles.iter().enumerate() {
        for (other, other_role, other_written, other_own) in &roles[..i] {
            let clash = topic == other
                && (*written || *other_written)
                && (written != other_written || *own || *other_own);
            if clash {
                return Err(Failure::new(format!(
                    "topic `{topic}` is both {other_role} and {role}: give each its own topic"
                )));
            }
        }
    }
    Ok(())
}
