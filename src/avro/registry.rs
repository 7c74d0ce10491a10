//! A client of a Confluent-compatible Schema Registry (Confluent, Karapace,
//! Apicurio's ccompat API, Redpanda): writer schemas by id, registration of
//! derived schemas under `<topic>-value` (TopicNameStrategy).
//!
//! Blocking on purpose: the worker's loop is a thread, and the registry is
//! asked only the first time a schema id is seen.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::config::SchemaRegistrySection;

/// What went wrong talking to the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Unreachable, timed out, a 5xx, 408 or 429, or an answer that is not
    /// the registry's (a proxy's page, a 404 without the registry's error
    /// code): try again later, never skip a record for it.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// 404: the schema id (or subject) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the registry refused a schema as incompatible with the subject's versions.
    #[error("the registry refused the schema for subject `{subject}` as incompatible with its latest version{version}: {message}")]
    Incompatible {
        subject: String,
        version: String,
        message: String,
    },
    /// 401 or 403: the credentials are wrong or lack a permission (a
    /// configuration error: the worker stops rather than dead-letter).
    #[error("the registry refused custos's credentials ({status}): {message}; check schema_registry.username and password")]
    Unauthorized { status: u16, message: String },
    /// Any other refusal (4xx: an invalid schema).
    #[error("the registry answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// Confluent's content type for requests and answers.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

pub struct Registry {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("schema_registry.{what} `{}`: {e}", path.display()))
}

impl Registry {
    /// A client for `url` with the section's authentication, TLS and timeout.
    ///
    /// # Errors
    /// Unreadable or invalid certificate files.
    pub fn new(
        cfg: &SchemaRegistrySection,
        url: &str,
        password: Option<&[u8]>,
    ) -> Result<Registry, String> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        if let Some(ca) = &cfg.ca_file {
            let pem = read_pem(ca, "ca_file")?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "schema_registry.ca_file `{}` holds no certificate",
                    ca.display()
                ));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            let pem = read_pem(cert, "cert_file")?;
            let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let kpem = read_pem(key, "key_file")?;
            let key = PrivateKey::from_pem(&kpem)
                .map_err(|e| format!("schema_registry.key_file `{}`: {e}", key.display()))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        let auth = cfg.username.as_ref().map(|u| {
            let mut creds = u.as_bytes().to_vec();
            creds.push(b':');
            creds.extend_from_slice(password.unwrap_or_default());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        });
        Ok(Registry {
            agent,
            base: url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// A client without authentication or TLS settings (tests, the demo).
    pub fn plain(url: &str) -> Registry {
        Registry::new(&SchemaRegistrySection::default(), url, None).expect("no files to read")
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), RegistryError> {
        let url = format!("{}{path}", self.base);
        let result = match body {
            None => {
                let mut r = self.agent.get(&url).header("Accept", CONTENT_TYPE);
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Accept", CONTENT_TYPE)
                    .header("Content-Type", CONTENT_TYPE);
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.send(b.to_string())
            }
        };
        let mut resp =
            result.map_err(|e| RegistryError::Unavailable(format!("{method} {path}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| RegistryError::Unavailable(format!("{method} {path}: {e}")))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 500 || status == 408 || status == 429 {
            return Err(RegistryError::Unavailable(format!(
                "{method} {path}: {status} {}",
                message(&v)
            )));
        }
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                status,
                message: message(&v),
            });
        }
        Ok((status, v))
    }

    /// Whether the registry answers at all (`GET /config`).
    ///
    /// # Errors
    /// Unreachable, 5xx, refused credentials.
    pub fn probe(&self) -> Result<(), RegistryError> {
        self.call("GET", "/config", None).map(|_| ())
    }

    /// The schema text registered under `id`.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] for an unknown id; `Unavailable` to retry.
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let path = format!("/schemas/ids/{id}");
        let (status, v) = self.call("GET", &path, None)?;
        match status {
            200 => {
                if let Some(t) = v.get("schemaType").and_then(Value::as_str) {
                    if t != "AVRO" {
                        return Err(RegistryError::NotFound(format!(
                            "schema id {id} is a {t} schema, not Avro"
                        )));
                    }
                }
                v.get("schema")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        RegistryError::Unavailable(format!("GET {path}: an answer without `schema`"))
                    })
            }
            // Only the registry's own "schema not found" is about the id; any
            // other 404 (a wrong base path, a proxy) is not the registry answering.
            404 if error_code(&v) == Some(40403) => Err(RegistryError::NotFound(format!(
                "schema id {id} is not in the registry ({})",
                message(&v)
            ))),
            404 => Err(RegistryError::Unavailable(format!(
                "GET {path}: 404 without the registry's error code (is schema_registry.url the registry's base URL?): {}",
                message(&v)
            ))),
            s => Err(RegistryError::Refused {
                status: s,
                message: message(&v),
            }),
        }
    }

    /// Registers `schema` under `subject` (or finds it there); its global id.
    ///
    /// # Errors
    /// [`RegistryError::Incompatible`] when the subject's compatibility rule
    /// refuses it; `Unavailable` to retry.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = json!({"schema": schema});
        let (status, v) = self.call(
            "POST",
            &format!("/subjects/{}/versions", enc(subject)),
            Some(&body),
        )?;
        match status {
            200 => v
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| {
                    RegistryError::Unavailable(format!(
                        "POST /subjects/{subject}/versions: an answer without `id`"
                    ))
                }),
            409 => Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                version: self
                    .latest_version(subject)
                    .map(|n| format!(" (version {n})"))
                    .unwrap_or_default(),
                message: message(&v),
            }),
            s => Err(RegistryError::Refused {
                status: s,
                message: message(&v),
            }),
        }
    }

    fn latest_version(&self, subject: &str) -> Option<u64> {
        let (status, v) = self
            .call(
                "GET",
                &format!("/subjects/{}/versions/latest", enc(subject)),
                None,
            )
            .ok()?;
        (status == 200)
            .then(|| v.get("version").and_then(Value::as_u64))
            .flatten()
    }

    /// Whether `schema` is compatible with a subject's version (`latest`
    /// or a number) under the subject's rule.
    ///
    /// # Errors
    /// As for every call.
    pub fn compatible(
        &self,
        subject: &str,
        version: &str,
        schema: &str,
    ) -> Result<bool, RegistryError> {
        let body = json!({"schema": schema});
        let (status, v) = self.call(
            "POST",
            &format!(
                "/compatibility/subjects/{}/versions/{version}",
                enc(subject)
            ),
            Some(&body),
        )?;
        match status {
            200 => Ok(v
                .get("is_compatible")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            s => Err(RegistryError::Refused {
                status: s,
                message: message(&v),
            }),
        }
    }
}

fn error_code(v: &Value) -> Option<u64> {
    v.get("error_code").and_then(Value::as_u64)
}

fn message(v: &Value) -> String {
    match v.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => {
            let s = v.to_string();
            s.chars().take(200).collect()
        }
    }
}

/// Percent-encodes a subject for a URL path.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
