//! An in-memory, Confluent-compatible Schema Registry: the REST subset that
//! custos and Confluent's own clients use, with the real error codes and the
//! compatibility check. For tests, the demo and `custos registry` (a stand-in
//! to try Avro streams without a registry); never for production: it keeps
//! nothing on disk.
//!
//! Endpoints: `GET /schemas/ids/{id}`, `GET /schemas/ids/{id}/versions`,
//! `GET /subjects`, `GET /subjects/{s}/versions`,
//! `GET /subjects/{s}/versions/{v|latest}`, `POST /subjects/{s}/versions`
//! (register), `POST /subjects/{s}` (look up), `POST
//! /compatibility/subjects/{s}/versions/{v|latest}`, `GET|PUT /config`,
//! `GET|PUT /config/{s}`. Compatibility levels: NONE, BACKWARD (default),
//! FORWARD, FULL and their `_TRANSITIVE` forms, checked with apache-avro's
//! schema resolution rules.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Store {
    /// Schema text and its parsed JSON, by id − 1.
    schemas: Vec<(String, Value)>,
    /// Subject → ids of its versions, in order.
    subjects: BTreeMap<String, Vec<u32>>,
    global: Option<String>,
    per_subject: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Shared {
    store: Arc<Mutex<Store>>,
    down: Arc<AtomicBool>,
    /// `Authorization` header value every request must carry, if set.
    auth: Arc<Mutex<Option<String>>>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    /// Starts on `addr` (`127.0.0.1:0` for any free port) in a thread of its own.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start(addr: &str) -> std::io::Result<StandIn> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Shared::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("registry-stand-in".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })?;
        Ok(StandIn {
            addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While set, every request is answered 503 (a registry that is down).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// From now on, every request needs HTTP basic authentication with these credentials.
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self
            .shared
            .auth
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("Basic {token}"));
    }

    /// Registers a schema directly (as a producer's serializer would).
    ///
    /// # Errors
    /// Invalid or incompatible schema: the registry's message.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, String> {
        let mut s = self
            .shared
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        register(&mut s, subject, schema)
            .map(|(id, _)| id)
            .map_err(|(_, _, m)| m)
    }

    /// Every subject and its versions' schema texts.
    pub fn subjects(&self) -> BTreeMap<String, Vec<String>> {
        let s = self
            .shared
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.subjects
            .iter()
            .map(|(k, ids)| {
                (
                    k.clone(),
                    ids.iter()
                        .map(|i| s.schemas[*i as usize - 1].0.clone())
                        .collect(),
                )
            })
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, super::registry::CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error(status: u16, code: u32, message: impl Into<String>) -> Response {
    reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"error_code": code, "message": message.into()}),
    )
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register_handler),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_compatibility),
        )
        .route("/config", get(get_global).put(put_global))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            unavailable,
        ))
        .with_state(shared)
}

async fn unavailable(
    State(sh): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if sh.down.load(Ordering::SeqCst) {
        return error(503, 50003, "the registry is down (stand-in switched off)");
    }
    let expected = sh
        .auth
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return error(401, 40101, "Unauthorized");
        }
    }
    next.run(req).await
}

fn lock(sh: &Shared) -> std::sync::MutexGuard<'_, Store> {
    sh.store.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn schema_by_id(State(sh): State<Shared>, Path(id): Path<String>) -> Response {
    let s = lock(&sh);
    match id
        .parse::<usize>()
        .ok()
        .and_then(|i| s.schemas.get(i.wrapping_sub(1)))
    {
        Some((text, _)) => reply(StatusCode::OK, json!({"schema": text})),
        None => error(404, 40403, "Schema not found"),
    }
}

async fn versions_of_id(State(sh): State<Shared>, Path(id): Path<u32>) -> Response {
    let s = lock(&sh);
    let out: Vec<Value> = s
        .subjects
        .iter()
        .flat_map(|(sub, ids)| {
            ids.iter()
                .enumerate()
                .filter(|(_, i)| **i == id)
                .map(|(v, _)| json!({"subject": sub, "version": v + 1}))
                .collect::<Vec<_>>()
        })
        .collect();
    if out.is_empty() {
        return error(404, 40403, "Schema not found");
    }
    reply(StatusCode::OK, Value::Array(out))
}

async fn list_subjects(State(sh): State<Shared>) -> Response {
    let s = lock(&sh);
    reply(StatusCode::OK, json!(s.subjects.keys().collect::<Vec<_>>()))
}

async fn list_versions(State(sh): State<Shared>, Path(subject): Path<String>) -> Response {
    let s = lock(&sh);
    match s.subjects.get(&subject) {
        Some(ids) => reply(StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => error(404, 40401, format!("Subject '{subject}' not found.")),
    }
}

fn version_index(ids: &[u32], version: &str) -> Option<usize> {
    if version == "latest" || version == "-1" {
        return ids.len().checked_sub(1);
    }
    version
        .parse::<usize>()
        .ok()
        .filter(|v| *v >= 1 && *v <= ids.len())
        .map(|v| v - 1)
}

async fn get_version(
    State(sh): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let s = lock(&sh);
    let Some(ids) = s.subjects.get(&subject) else {
        return error(404, 40401, format!("Subject '{subject}' not found."));
    };
    match version_index(ids, &version) {
        Some(v) => {
            let id = ids[v];
            reply(
                StatusCode::OK,
                json!({"subject": subject, "version": v + 1, "id": id,
                       "schema": s.schemas[id as usize - 1].0}),
            )
        }
        None => error(404, 40402, format!("Version {version} not found.")),
    }
}

fn schema_of(body: &Bytes) -> Result<String, Box<Response>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Box::new(error(422, 42201, "Invalid request body")))?;
    if let Some(t) = v.get("schemaType").and_then(Value::as_str) {
        if t != "AVRO" {
            return Err(Box::new(error(
                422,
                42201,
                format!("schema type {t} is not supported by this stand-in"),
            )));
        }
    }
    v.get("schema")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Box::new(error(422, 42201, "Empty schema")))
}

fn parse(text: &str) -> Result<(apache_avro::Schema, Value), (u16, u32, String)> {
    let schema = apache_avro::Schema::parse_str(text)
        .map_err(|e| (422, 42201, format!("Invalid schema: {e}")))?;
    let json: Value =
        serde_json::from_str(text).map_err(|e| (422, 42201, format!("Invalid schema: {e}")))?;
    Ok((schema, json))
}

fn level(s: &Store, subject: &str) -> String {
    s.per_subject
        .get(subject)
        .or(s.global.as_ref())
        .cloned()
        .unwrap_or_else(|| "BACKWARD".into())
}

/// Problems of `new` against the versions its subject's rule checks.
fn incompatibilities(
    s: &Store,
    subject: &str,
    new: &apache_avro::Schema,
    against: &[u32],
) -> Vec<String> {
    let lvl = level(s, subject);
    if lvl == "NONE" || against.is_empty() {
        return Vec::new();
    }
    let transitive = lvl.ends_with("_TRANSITIVE");
    let base = lvl.trim_end_matches("_TRANSITIVE");
    let olds: Vec<u32> = if transitive {
        against.to_vec()
    } else {
        against.last().copied().into_iter().collect()
    };
    let mut problems = Vec::new();
    for id in olds {
        let Ok(old) = apache_avro::Schema::parse_str(&s.schemas[id as usize - 1].0) else {
            continue;
        };
        let backward = || SchemaCompatibility::can_read(&old, new).err();
        let forward = || SchemaCompatibility::can_read(new, &old).err();
        let found = match base {
            "BACKWARD" => backward(),
            "FORWARD" => forward(),
            "FULL" => backward().or_else(forward),
            _ => None,
        };
        if let Some(e) = found {
            problems.push(format!("{{oldSchemaId: {id}, reason: {e}}}"));
        }
    }
    problems
}

fn register(s: &mut Store, subject: &str, text: &str) -> Result<(u32, usize), (u16, u32, String)> {
    let (schema, json) = parse(text)?;
    let existing = s.subjects.get(subject).cloned().unwrap_or_default();
    if let Some(v) = existing
        .iter()
        .position(|id| s.schemas[*id as usize - 1].1 == json)
    {
        return Ok((existing[v], v + 1));
    }
    let problems = incompatibilities(s, subject, &schema, &existing);
    if !problems.is_empty() {
        return Err((
            409,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                problems.join(", ")
            ),
        ));
    }
    let id = match s.schemas.iter().position(|(_, j)| *j == json) {
        Some(i) => i as u32 + 1,
        None => {
            s.schemas.push((text.to_string(), json));
            s.schemas.len() as u32
        }
    };
    let ids = s.subjects.entry(subject.to_string()).or_default();
    ids.push(id);
    Ok((id, ids.len()))
}

async fn register_handler(
    State(sh): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let text = match schema_of(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let mut s = lock(&sh);
    match register(&mut s, &subject, &text) {
        Ok((id, version)) => reply(
            StatusCode::OK,
            json!({"id": id, "subject": subject, "version": version, "schema": text}),
        ),
        Err((status, code, m)) => error(status, code, m),
    }
}

async fn lookup(State(sh): State<Shared>, Path(subject): Path<String>, body: Bytes) -> Response {
    let text = match schema_of(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let json = match parse(&text) {
        Ok((_, j)) => j,
        Err((status, code, m)) => return error(status, code, m),
    };
    let s = lock(&sh);
    let Some(ids) = s.subjects.get(&subject) else {
        return error(404, 40401, format!("Subject '{subject}' not found."));
    };
    match ids
        .iter()
        .position(|id| s.schemas[*id as usize - 1].1 == json)
    {
        Some(v) => reply(
            StatusCode::OK,
            json!({"subject": subject, "version": v + 1, "id": ids[v], "schema": text}),
        ),
        None => error(404, 40403, "Schema not found"),
    }
}

async fn check_compatibility(
    State(sh): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let text = match schema_of(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let schema = match parse(&text) {
        Ok((s, _)) => s,
        Err((status, code, m)) => return error(status, code, m),
    };
    let s = lock(&sh);
    let Some(ids) = s.subjects.get(&subject) else {
        return error(404, 40401, format!("Subject '{subject}' not found."));
    };
    let Some(v) = version_index(ids, &version) else {
        return error(404, 40402, format!("Version {version} not found."));
    };
    let lvl = level(&s, &subject);
    let against: &[u32] = if lvl.ends_with("_TRANSITIVE") {
        &ids[..=v]
    } else {
        &ids[v..=v]
    };
    let problems = incompatibilities(&s, &subject, &schema, against);
    reply(
        StatusCode::OK,
        json!({"is_compatible": problems.is_empty(), "messages": problems}),
    )
}

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

fn level_of(body: &Bytes) -> Result<String, Box<Response>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Box::new(error(422, 42203, "Invalid compatibility level")))?;
    v.get("compatibility")
        .and_then(Value::as_str)
        .filter(|l| LEVELS.contains(l))
        .map(str::to_string)
        .ok_or_else(|| Box::new(error(422, 42203, "Invalid compatibility level")))
}

async fn get_global(State(sh): State<Shared>) -> Response {
    let s = lock(&sh);
    reply(
        StatusCode::OK,
        json!({"compatibilityLevel": s.global.clone().unwrap_or_else(|| "BACKWARD".into())}),
    )
}

async fn put_global(State(sh): State<Shared>, body: Bytes) -> Response {
    match level_of(&body) {
        Ok(l) => {
            lock(&sh).global = Some(l.clone());
            reply(StatusCode::OK, json!({"compatibility": l}))
        }
        Err(r) => *r,
    }
}

async fn get_subject_config(State(sh): State<Shared>, Path(subject): Path<String>) -> Response {
    let s = lock(&sh);
    match s.per_subject.get(&subject) {
        Some(l) => reply(StatusCode::OK, json!({"compatibilityLevel": l})),
        None => error(
            404,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        ),
    }
}

async fn put_subject_config(
    State(sh): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    match level_of(&body) {
        Ok(l) => {
            lock(&sh).per_subject.insert(subject, l.clone());
            reply(StatusCode::OK, json!({"compatibility": l}))
        }
        Err(r) => *r,
    }
}
