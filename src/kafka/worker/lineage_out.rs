//! The lineage producer: OpenLineage run events to `lineage.topic`, best effort.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Sends the OpenLineage events of every stream to `lineage.topic`, and to
/// `lineage.openlineage_url` when set.
pub(super) struct Lineage {
    pub(super) producer: BaseProducer,
    pub(super) topic: String,
    pub(super) namespace: String,
    /// One run per stream (each stream is its own job).
    pub(super) run_ids: Vec<String>,
    pub(super) http: Option<HttpSink>,
}

/// How many events may wait for the HTTP endpoint; more are dropped (and
/// counted): lineage never holds up the record path.
const HTTP_QUEUE: usize = 256;
/// Attempts per event, with backoff between them (0.5 s, 1 s, 2 s, …).
const HTTP_ATTEMPTS: u32 = 4;

/// A thread that POSTs lineage events to an OpenLineage endpoint (Marquez,
/// …) from a bounded queue, retrying with backoff.
pub(super) struct HttpSink {
    queue: Option<std::sync::mpsc::SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    done: Arc<AtomicBool>,
    metrics: Metrics,
}

impl HttpSink {
    pub(super) fn start(url: String, metrics: Metrics) -> HttpSink {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(HTTP_QUEUE);
        let done = Arc::new(AtomicBool::new(false));
        let m = metrics.clone();
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("openlineage-http".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(5)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut failing = false;
                while let Ok(body) = rx.recv() {
                    let mut delay = Duration::from_millis(500);
                    let mut sent = false;
                    let mut last = String::new();
                    for attempt in 0..HTTP_ATTEMPTS {
                        if attempt > 0 {
                            if stop.load(Ordering::SeqCst) {
                                break; // shutting down: no more waiting
                            }
                            std::thread::sleep(delay);
                            delay *= 2;
                        }
                        match agent
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .send(body.as_str())
                        {
                            Ok(r) if r.status().is_success() => {
                                sent = true;
                                break;
                            }
                            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                            // The URL may carry credentials: never in the log.
                            Err(e) => last = e.to_string().replace(url.as_str(), "<openlineage_url>"),
                        }
                    }
                    if sent {
                        m.lineage_http.with_label_values(&["sent"]).inc();
                        if failing {
                            tracing::info!("OpenLineage endpoint accepts events again");
                            failing = false;
                        }
                    } else {
                        m.lineage_http.with_label_values(&["failed"]).inc();
                        if !failing {
                            // Logged once per outage; the counter has every one.
                            tracing::warn!(reason = %last, "OpenLineage endpoint refuses or cannot be reached: events are dropped (they are on lineage.topic too)");
                            failing = true;
                        }
                    }
                }
            })
            .ok();
        HttpSink {
            queue: Some(tx),
            thread,
            done,
            metrics,
        }
    }

    /// Queues an event; never blocks.
    fn send(&self, body: String) {
        if let Some(q) = &self.queue {
            if q.try_send(body).is_err() {
                self.metrics
                    .lineage_http
                    .with_label_values(&["dropped"])
                    .inc();
            }
        }
    }

    /// Sends what is queued within `timeout`, then lets the thread go.
    fn finish(&mut self, timeout: Duration) {
        self.queue = None; // the thread ends when the queue is empty
        let deadline = std::time::Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.done.store(true, Ordering::SeqCst);
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Lineage {
    pub(super) fn new(
        base: &ClientConfig,
        bootstrap: &str,
        cfg: &Config,
        compiled: &Compiled,
        metrics: &Metrics,
    ) -> Result<Lineage, WorkerError> {
        let run_ids = (0..compiled.streams.len())
            .map(|i| {
                let mut random = [0u8; 16];
                // Without OS randomness the run id is still unique enough.
                if getrandom::fill(&mut random).is_err() {
                    random[..8].copy_from_slice(&now_ms().to_be_bytes());
                    random[8..12].copy_from_slice(&std::process::id().to_be_bytes());
                    random[12..].copy_from_slice(&(i as u32).to_be_bytes());
                }
                lineage::run_id(random)
            })
            .collect();
        let first = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
        let mut pconf = base.clone();
        // Lineage is best effort: it must not hold up a start or a stop.
        pconf
            .set("message.timeout.ms", "5000")
            .set("statistics.interval.ms", "0");
        Ok(Lineage {
            producer: pconf.create()?,
            topic: cfg.lineage.topic.clone(),
            namespace: format!("kafka://{first}"),
            run_ids,
            http: cfg
                .lineage
                .openlineage_url
                .clone()
                .map(|url| HttpSink::start(url, metrics.clone())),
        })
    }

    /// Best effort: lineage describes the plan, it carries no record, so a
    /// failure to send it is logged and processing goes on.
    pub(super) fn emit(&mut self, compiled: &Compiled, kind: EventType, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let time = audit::rfc3339_ms(now_ms());
        for (plan, run_id) in compiled.streams.iter().zip(&self.run_ids) {
            let run = lineage::Run {
                policy: &compiled.policy.name,
                namespace: &self.namespace,
                run_id,
            };
            let event = lineage::run_event(plan, &run, kind, &time).to_string();
            let job = lineage::job_name(&compiled.policy.name, plan);
            if let Some(h) = &self.http {
                h.send(event.clone());
            }
            let record = BaseRecord::<str, str>::to(&self.topic)
                .key(&job)
                .payload(&event);
            if let Err((e, _)) = self.producer.send(record) {
                tracing::warn!(error = %e, job, "lineage event not sent");
            }
        }
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, event = kind.name(), "lineage events not delivered");
        }
        if kind != EventType::Start {
            // The run's last event: give the endpoint what is left of the time.
            if let Some(h) = self.http.as_mut() {
                h.finish(deadline.saturating_duration_since(std::time::Instant::now()));
            }
        }
    }
}

/// How long lineage events may take to be delivered (they are best effort).
pub(super) const LINEAGE_FLUSH: Duration = Duration::from_secs(6);
