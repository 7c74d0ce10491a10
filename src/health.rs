//! What `/readyz` reports: the worker's real state, kept up to date by the
//! threads that see it (consumer loop, librdkafka statistics, delivery
//! reports, the consent/erasure reader). Plain atomics, no locks; never
//! touches records.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// A worker whose producer has records in flight and no acknowledgement for
/// this long is not ready (a wedged producer, an unreachable partition leader).
pub const PRODUCE_STALL_MS: i64 = 30_000;

/// Shared health flags of one worker.
#[derive(Debug, Default)]
pub struct Health {
    /// Policy loaded, consent/erasure state read to its end, consumer subscribed.
    started: AtomicBool,
    /// SIGTERM/SIGINT received: the worker drains and will stop.
    draining: AtomicBool,
    /// The consent or erasure reader lost its topic or failed: the worker
    /// does not govern without the subject state.
    state_lost: AtomicBool,
    /// librdkafka statistics say no broker connection is up (0 = reachable).
    brokers_down_since_ms: AtomicI64,
    /// When the oldest record still waiting for an acknowledgement was
    /// seen waiting without any acknowledgement since (0 = none waiting).
    produce_waiting_since_ms: AtomicI64,
    /// The schema registry cannot be reached: partitions that need a new
    /// schema are paused until it answers.
    registry_down: AtomicBool,
}

impl Health {
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn set_state_lost(&self) {
        self.state_lost.store(true, Ordering::SeqCst);
    }

    /// From the consumer loop: whether the schema registry answers.
    pub fn registry_up(&self, up: bool) {
        self.registry_down.store(!up, Ordering::SeqCst);
    }

    pub fn state_lost(&self) -> bool {
        self.state_lost.load(Ordering::SeqCst)
    }

    /// From librdkafka statistics: whether any broker connection is up.
    pub fn brokers_up(&self, up: bool, now_ms: i64) {
        if up {
            self.brokers_down_since_ms.store(0, Ordering::SeqCst);
        } else {
            let _ = self.brokers_down_since_ms.compare_exchange(
                0,
                now_ms.max(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// From the consumer loop: whether records wait for an acknowledgement
    /// and whether one arrived since the last call.
    pub fn produce_progress(&self, waiting: bool, acked_since: bool, now_ms: i64) {
        if !waiting || acked_since {
            self.produce_waiting_since_ms
                .store(if waiting { now_ms.max(1) } else { 0 }, Ordering::SeqCst);
        } else {
            let _ = self.produce_waiting_since_ms.compare_exchange(
                0,
                now_ms.max(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Whether the producer has had records waiting without any
    /// acknowledgement for longer than [`PRODUCE_STALL_MS`].
    pub fn produce_stalled(&self, now_ms: i64) -> bool {
        let since = self.produce_waiting_since_ms.load(Ordering::SeqCst);
        since > 0 && now_ms - since > PRODUCE_STALL_MS
    }

    /// Why the worker is not ready; empty when it is.
    pub fn problems(&self, now_ms: i64) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.started.load(Ordering::SeqCst) {
            out.push("starting: policy, consent/erasure state or consumer not ready yet");
        }
        if self.draining.load(Ordering::SeqCst) {
            out.push("draining: stopping");
        }
        if self.state_lost() {
            out.push("consent/erasure state lost: a topic is gone or unreadable");
        }
        if self.brokers_down_since_ms.load(Ordering::SeqCst) > 0 {
            out.push("no broker connection is up");
        }
        if self.registry_down.load(Ordering::SeqCst) {
            out.push("schema registry unreachable: partitions that need a new schema are paused");
        }
        if self.produce_stalled(now_ms) {
            out.push("producer stalled: records in flight and no acknowledgement for 30 s");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_state() {
        let h = Health::default();
        assert_eq!(h.problems(0).len(), 1, "not started");
        h.set_started();
        assert!(h.problems(0).is_empty());
        h.brokers_up(false, 1_000);
        assert_eq!(h.problems(1_000), vec!["no broker connection is up"]);
        h.brokers_up(true, 2_000);
        assert!(h.problems(2_000).is_empty());
        // Waiting without acknowledgements: stalled after 30 s.
        h.produce_progress(true, false, 10_000);
        h.produce_progress(true, false, 20_000);
        assert!(h.problems(39_000).is_empty());
        assert!(!h.problems(40_001).is_empty());
        // An acknowledgement resets the clock.
        h.produce_progress(true, true, 41_000);
        assert!(h.problems(60_000).is_empty());
        h.produce_progress(false, false, 61_000);
        assert!(h.problems(200_000).is_empty());
        h.set_draining();
        assert_eq!(h.problems(200_000), vec!["draining: stopping"]);
    }
}
