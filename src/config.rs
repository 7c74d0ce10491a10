//! Worker configuration: a TOML file, every key overridable by
//! `CUSTOS_<SECTION>__<KEY>` environment variables, unknown keys refused.
//!
//! Loading is in two steps, as everywhere in custos: structure (pure, from
//! the file text and a map of variables), then checks that need the
//! environment (the policy file exists, secrets are set) in `kafka`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::KeySource;

/// The whole worker configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path of the policy file, relative to the config file's directory.
    pub policy: PathBuf,
    #[serde(default)]
    pub kafka: KafkaSection,
    #[serde(default)]
    pub delivery: DeliverySection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub lineage: LineageSection,
    #[serde(default)]
    pub dead_letter: DeadLetterSection,
    #[serde(default)]
    pub encryption: EncryptionSection,
    #[serde(default)]
    pub schema_registry: SchemaRegistrySection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port,…`, or `embedded` for an in-process broker.
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    #[serde(default = "default_true")]
    pub manage_topics: bool,
    /// Passed to librdkafka unchanged (TLS, SASL, tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            bootstrap_servers: default_bootstrap(),
            group_id: default_group(),
            manage_topics: true,
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    #[serde(default = "default_guarantee")]
    pub guarantee: Guarantee,
    #[serde(default = "default_txn_interval")]
    pub transaction_interval_ms: u64,
    #[serde(default = "default_drain")]
    pub drain_timeout_ms: u64,
    /// A record whose governed output for some purpose would be larger
    /// (key + value + headers) is dead-lettered (`too_large`): keep it below
    /// the broker's and the producer's `message.max.bytes`.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// Input values larger than this are dead-lettered (`too_large`).
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
}

fn default_max_output() -> usize {
    crate::engine::DEFAULT_MAX_OUTPUT_BYTES
}

fn default_max_record() -> usize {
    crate::engine::DEFAULT_MAX_RECORD_BYTES
}

impl DeliverySection {
    pub fn limits(&self) -> crate::engine::Limits {
        crate::engine::Limits {
            max_record_bytes: self.max_record_bytes,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            guarantee: default_guarantee(),
            transaction_interval_ms: default_txn_interval(),
            drain_timeout_ms: default_drain(),
            max_output_bytes: default_max_output(),
            max_record_bytes: default_max_record(),
        }
    }
}

/// A named secret in the config: `{ env = "VAR" }` or `{ file = "path" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}

impl SecretRef {
    pub fn source(&self) -> Option<KeySource> {
        match (&self.env, &self.file) {
            (Some(e), None) => Some(KeySource::Env(e.clone())),
            (None, Some(f)) => Some(KeySource::File(f.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    Record,
    Summary,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    #[serde(default = "default_audit_topic")]
    pub topic: String,
    pub key: Option<SecretRef>,
    #[serde(default = "default_audit_level")]
    pub level: AuditLevel,
    /// `level = "summary"` under at_least_once: how long a partition's
    /// summary gathers records before it is written (exactly_once writes one
    /// per partition per transaction).
    #[serde(default = "default_summary_interval_ms")]
    pub summary_interval_ms: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            topic: default_audit_topic(),
            key: None,
            level: default_audit_level(),
            summary_interval_ms: default_summary_interval_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineageSection {
    #[serde(default = "default_lineage_topic")]
    pub topic: String,
    pub openlineage_url: Option<String>,
}

impl Default for LineageSection {
    fn default() -> Self {
        LineageSection {
            topic: default_lineage_topic(),
            openlineage_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSection {
    #[serde(default = "default_dl_topic")]
    pub topic: String,
}

impl Default for DeadLetterSection {
    fn default() -> Self {
        DeadLetterSection {
            topic: default_dl_topic(),
        }
    }
}

/// The `encrypt` action's data keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// The compacted topic custos keeps the wrapped per-subject data keys
    /// on (created with one partition when `kafka.manage_topics`).
    #[serde(default = "default_keys_topic")]
    pub keys_topic: String,
}

impl Default for EncryptionSection {
    fn default() -> Self {
        EncryptionSection {
            keys_topic: default_keys_topic(),
        }
    }
}

fn default_keys_topic() -> String {
    "custos.keys".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// `http(s)://host:port` of a Confluent-compatible Schema Registry;
    /// required when the policy has an Avro stream.
    pub url: Option<String>,
    /// Basic authentication user name.
    pub username: Option<String>,
    /// Basic authentication password (`{ env = … }` or `{ file = … }`).
    pub password: Option<SecretRef>,
    /// PEM file of the CA certificates to trust (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Timeout of one request to the registry.
    #[serde(default = "default_registry_timeout")]
    pub timeout_ms: u64,
}

fn default_registry_timeout() -> u64 {
    10_000
}

impl Default for SchemaRegistrySection {
    fn default() -> Self {
        SchemaRegistrySection {
            url: None,
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout_ms: default_registry_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: default_listen(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: default_log_format(),
        }
    }
}

fn default_bootstrap() -> String {
    "localhost:9092".into()
}
fn default_group() -> String {
    "custos".into()
}
fn default_true() -> bool {
    true
}
fn default_guarantee() -> Guarantee {
    Guarantee::AtLeastOnce
}
fn default_txn_interval() -> u64 {
    100
}
fn default_drain() -> u64 {
    10_000
}
fn default_audit_topic() -> String {
    "custos.audit".into()
}
fn default_audit_level() -> AuditLevel {
    AuditLevel::Record
}
fn default_summary_interval_ms() -> u64 {
    1000
}
fn default_lineage_topic() -> String {
    "custos.lineage".into()
}
fn default_dl_topic() -> String {
    "custos.dead-letter".into()
}
fn default_listen() -> String {
    "0.0.0.0:9464".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Json
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("config: `{key}` {reason}")]
    Value { key: String, reason: String },
    #[error("config has {} problems:{}", .0.len(), .0.iter().map(|e| format!("\n  {e}")).collect::<String>())]
    Many(Vec<ConfigError>),
}

/// The environment variables that configure custos: `CUSTOS_<SECTION>__<KEY>`
/// and `CUSTOS_POLICY`. Other `CUSTOS_*` variables (such as policy secrets)
/// are not configuration and are left alone.
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| {
            k.strip_prefix("CUSTOS_")
                .is_some_and(|rest| rest.contains("__") || rest == "POLICY")
        })
        .collect()
}

impl Config {
    /// Parses a config from TOML text plus environment overrides.
    ///
    /// # Errors
    /// Syntax errors, unknown keys (named), bad values.
    pub fn parse(
        text: &str,
        origin: &str,
        env: HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("CUSTOS")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|e| ConfigError::Invalid {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?;
        let cfg: Config = built.try_deserialize().map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a config file; the policy path is resolved against its directory.
    ///
    /// # Errors
    /// The file cannot be read, or [`Config::parse`] fails.
    pub fn load(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut cfg = Config::parse(&text, &path.display().to_string(), env)?;
        if cfg.policy.is_relative() {
            if let Some(dir) = path.parent() {
                cfg.policy = dir.join(&cfg.policy);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // Every problem at once, like the policy loader: one restart fixes all.
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut bad = |key: &str, reason: &str| {
            errors.push(ConfigError::Value {
                key: key.into(),
                reason: reason.into(),
            });
        };
        if self.kafka.bootstrap_servers.trim().is_empty() {
            bad(
                "kafka.bootstrap_servers",
                "is empty; give host:port,… or \"embedded\"",
            );
        }
        if self.kafka.group_id.trim().is_empty() {
            bad("kafka.group_id", "is empty");
        }
        if self.delivery.drain_timeout_ms == 0 {
            bad("delivery.drain_timeout_ms", "must be greater than 0");
        }
        if self.delivery.transaction_interval_ms == 0 {
            bad("delivery.transaction_interval_ms", "must be greater than 0");
        }
        if self.delivery.max_output_bytes < 1024 {
            bad("delivery.max_output_bytes", "must be at least 1024");
        }
        if let Some(max) = self
            .kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if self.delivery.max_output_bytes >= max {
                bad(
                    "delivery.max_output_bytes",
                    &format!("is {} but kafka.properties sets message.max.bytes = {max}: a governed record that size would be refused; set it below (e.g. 90% of it)", self.delivery.max_output_bytes),
                );
            }
        }
        for (key, topic) in [
            ("audit.topic", &self.audit.topic),
            ("lineage.topic", &self.lineage.topic),
            ("dead_letter.topic", &self.dead_letter.topic),
            ("encryption.keys_topic", &self.encryption.keys_topic),
        ] {
            if topic.trim().is_empty() {
                bad(key, "is empty");
            }
        }
        if let Some(k) = &self.audit.key {
            if k.source().is_none() {
                bad("audit.key", "needs exactly one of `env` or `file`");
            }
        }
        for reserved in [
            "enable.auto.offset.store",
            "enable.auto.commit",
            "group.id",
            "bootstrap.servers",
            "transactional.id",
            "isolation.level",
        ] {
            if self.kafka.properties.contains_key(reserved) {
                bad(
                    &format!("kafka.properties.\"{reserved}\""),
                    "is managed by custos (delivery guarantees depend on it); remove it",
                );
            }
        }
        if !(10..=60_000).contains(&self.audit.summary_interval_ms) {
            bad(
                "audit.summary_interval_ms",
                "must be between 10 and 60000 (input offsets wait for their summary before they are committed)",
            );
        }
        let sr = &self.schema_registry;
        if let Some(url) = &sr.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad("schema_registry.url", "must start with http:// or https://");
            }
        }
        if sr.password.is_some() && sr.username.is_none() {
            bad(
                "schema_registry.password",
                "is set without schema_registry.username",
            );
        }
        if sr.password.as_ref().is_some_and(|p| p.source().is_none()) {
            bad(
                "schema_registry.password",
                "needs exactly one of env or file",
            );
        }
        if sr.cert_file.is_some() != sr.key_file.is_some() {
            bad(
                "schema_registry.cert_file",
                "and schema_registry.key_file go together",
            );
        }
        if sr.timeout_ms == 0 {
            bad("schema_registry.timeout_ms", "must be greater than 0");
        }
        if let Some(url) = &self.lineage.openlineage_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    "lineage.openlineage_url",
                    "must start with http:// or https:// (e.g. http://marquez:5000/api/v1/lineage)",
                );
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    /// True for `bootstrap_servers = "embedded"`.
    pub fn embedded(&self) -> bool {
        self.kafka.bootstrap_servers.trim() == "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            "custos.toml",
            env_overrides(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        )
    }

    #[test]
    fn defaults() {
        let c = parse("policy = \"p.yaml\"\n", &[]).unwrap();
        assert_eq!(c.kafka.group_id, "custos");
        assert!(c.kafka.manage_topics);
        assert_eq!(c.delivery.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(c.delivery.drain_timeout_ms, 10_000);
        assert_eq!(c.dead_letter.topic, "custos.dead-letter");
        assert_eq!(c.http.listen, "0.0.0.0:9464");
    }

    #[test]
    fn spec_example_parses() {
        let text = r#"
policy = "policy.yaml"
[kafka]
bootstrap_servers = "localhost:9092"
group_id = "custos"
manage_topics = true
[kafka.properties]
"security.protocol" = "SASL_SSL"
[delivery]
guarantee = "exactly_once"
transaction_interval_ms = 100
drain_timeout_ms = 10000
[audit]
topic = "custos.audit"
key = { env = "CUSTOS_AUDIT_KEY" }
level = "summary"
[lineage]
topic = "custos.lineage"
[dead_letter]
topic = "custos.dead-letter"
[schema_registry]
[http]
listen = "0.0.0.0:9464"
[log]
format = "text"
"#;
        let c = parse(text, &[]).unwrap();
        assert_eq!(c.audit.level, AuditLevel::Summary);
        assert_eq!(c.audit.summary_interval_ms, 1000);
        let e = parse(
            &text.replace(
                "level = \"summary\"",
                "level = \"summary\"\nsummary_interval_ms = 0",
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("audit.summary_interval_ms"), "{e}");
        assert_eq!(c.delivery.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(
            c.kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn env_overrides_win_and_secrets_are_ignored() {
        let c = parse(
            "policy = \"p.yaml\"\n[kafka]\nbootstrap_servers = \"a:1\"\n",
            &[
                ("CUSTOS_KAFKA__BOOTSTRAP_SERVERS", "b:2"),
                ("CUSTOS_DELIVERY__DRAIN_TIMEOUT_MS", "250"),
                ("CUSTOS_KEY_ANALYTICS", "secret"),
                ("CUSTOS_AUDIT_KEY", "secret"),
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "b:2");
        assert_eq!(c.delivery.drain_timeout_ms, 250);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(
            "policy = \"p.yaml\"\n[kafka]\nbootstrap_server = \"x\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bootstrap_server"), "{e}");
        let e = parse("policy = \"p.yaml\"\n[kafkaa]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafkaa"), "{e}");
        let e = parse("policy = \"p.yaml\"\n", &[("CUSTOS_KAFKA__BOGUS", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values() {
        let e = parse(
            "policy = \"p.yaml\"\n[delivery]\nguarantee = \"maybe_once\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("maybe_once"), "{e}");
        let e = parse(
            "policy = \"p.yaml\"\n[delivery]\ndrain_timeout_ms = 0\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("delivery.drain_timeout_ms"), "{e}");
        let e = parse(
            "policy = \"p.yaml\"\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("enable.auto.commit"), "{e}");
        let e = parse("[kafka]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("policy"), "{e}");
        // Every problem at once.
        let e = parse(
            "policy = \"p.yaml\"\n[kafka]\ngroup_id = \" \"\n[delivery]\ndrain_timeout_ms = 0\n[lineage]\nopenlineage_url = \"marquez:5000\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config has 3 problems:"), "{e}");
        for key in [
            "kafka.group_id",
            "delivery.drain_timeout_ms",
            "lineage.openlineage_url",
        ] {
            assert!(e.contains(&format!("\n  config: `{key}`")), "{e}");
        }
    }
}
