//! Ordered offset tracking for at-least-once delivery.
//!
//! Records of a partition are acknowledged out of order (outputs go to
//! different topics and partitions), but an offset may only be committed when
//! it and every earlier record of its partition are fully acknowledged. The
//! tracker keeps, per partition, the records still in flight; the committable
//! offset is the smallest one in flight, or one past the last consumed record.
//!
//! Each time a partition is (re)started in the tracker it gets a new
//! *generation*, and acknowledgements carry the generation of the record they
//! belong to: a late delivery report for a partition that was revoked (after a
//! drain timeout) and assigned back cannot acknowledge the re-read record with
//! the same offset.
//!
//! It also keeps, per partition, the audit chain hash of each record not yet
//! committed, so that a committed offset can carry the chain head (the hash
//! of the record just before it) as its commit metadata. Pure data
//! structure: no Kafka, no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A topic-partition.
pub type Tp = (Arc<str>, i32);

#[derive(Debug, Default)]
struct Part {
    /// offset → outputs not yet acknowledged.
    inflight: BTreeMap<i64, u32>,
    /// One past the highest offset begun.
    next: i64,
    /// The last offset handed out by [`OffsetTracker::committable`].
    stored: i64,
    generation: u64,
    /// offset → audit chain hash, for records at or after the last stored offset − 1.
    heads: BTreeMap<i64, String>,
}

/// A committable offset with the audit chain head that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committable {
    pub tp: Tp,
    pub offset: i64,
    /// How far the offset moved since the last report.
    pub advanced: u64,
    /// The audit hash of the record before `offset`, when known.
    pub head: Option<String>,
}

impl Part {
    /// The offset to commit at most `safe`: one past the last record before
    /// `safe` whose audit chain head is known, with that head; forgets older
    /// hashes. With a head per record that is `safe` itself (or the offset
    /// of a gap just before it); with a head per summary, the end of the
    /// last summary acknowledged: an offset never travels without the chain
    /// head its record left.
    fn head(heads: &mut BTreeMap<i64, String>, safe: i64) -> Option<(i64, String)> {
        let (&at, h) = heads.range(..safe).next_back()?;
        let h = h.clone();
        *heads = heads.split_off(&at);
        Some((at + 1, h))
    }
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: HashMap<Tp, Part>,
    generations: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A record was consumed and `pending` outputs will be sent for it (0:
    /// done at once). Returns the partition's generation, to pass to [`ack`](Self::ack).
    pub fn begin(&mut self, tp: &Tp, offset: i64, pending: u32, head: Option<String>) -> u64 {
        let generations = &mut self.generations;
        let part = self.parts.entry(tp.clone()).or_insert_with(|| {
            *generations += 1;
            Part {
                next: offset,
                stored: offset,
                generation: *generations,
                ..Part::default()
            }
        });
        if pending > 0 {
            *part.inflight.entry(offset).or_insert(0) += pending;
        }
        if let Some(h) = head {
            part.heads.insert(offset, h);
        }
        part.next = part.next.max(offset + 1);
        part.generation
    }

    /// Sets the audit chain head after the record at `offset` (written
    /// later than the record began: a summary). Ignored for a partition no
    /// longer tracked, or tracked again since.
    pub fn set_head(&mut self, tp: &Tp, offset: i64, generation: u64, head: String) {
        if let Some(part) = self
            .parts
            .get_mut(tp)
            .filter(|p| p.generation == generation)
        {
            part.heads.insert(offset, head);
        }
    }

    /// Whether `generation` is the partition's current one (its records are still tracked).
    pub fn is_current(&self, tp: &Tp, generation: u64) -> bool {
        self.parts
            .get(tp)
            .is_some_and(|p| p.generation == generation)
    }

    /// One output of a record was acknowledged. Acknowledgements of a
    /// partition no longer tracked, or of an earlier generation of it, are ignored.
    pub fn ack(&mut self, tp: &Tp, offset: i64, generation: u64) {
        if let Some(part) = self
            .parts
            .get_mut(tp)
            .filter(|p| p.generation == generation)
        {
            if let Some(n) = part.inflight.get_mut(&offset) {
                *n -= 1;
                if *n == 0 {
                    part.inflight.remove(&offset);
                }
            }
        }
    }

    /// The offset (next to consume) that may be committed for a partition.
    pub fn safe(&self, tp: &Tp) -> Option<i64> {
        let part = self.parts.get(tp)?;
        Some(part.inflight.keys().next().copied().unwrap_or(part.next))
    }

    /// Partitions whose committable offset moved since the last call.
    pub fn committable(&mut self) -> Vec<Committable> {
        let mut out = Vec::new();
        for (tp, part) in self.parts.iter_mut() {
            let safe = part.inflight.keys().next().copied().unwrap_or(part.next);
            if safe <= part.stored {
                continue;
            }
            let Some((offset, head)) = Part::head(&mut part.heads, safe) else {
                continue;
            };
            if offset > part.stored {
                out.push(Committable {
                    tp: tp.clone(),
                    offset,
                    advanced: (offset - part.stored) as u64,
                    head: Some(head),
                });
                part.stored = offset;
            }
        }
        out
    }

    /// Records still in flight, over all partitions or for some.
    pub fn inflight(&self, filter: impl Fn(&Tp) -> bool) -> usize {
        self.parts
            .iter()
            .filter(|(tp, _)| filter(tp))
            .map(|(_, p)| p.inflight.len())
            .sum()
    }

    /// Forgets a partition (revoked); returns its committable offset and
    /// chain head (`None`: nothing finished with a head since it began).
    pub fn remove(&mut self, tp: &Tp) -> Option<(i64, Option<String>)> {
        let safe = self.safe(tp)?;
        let mut part = self.parts.remove(tp)?;
        Some(match Part::head(&mut part.heads, safe) {
            Some((offset, head)) => (offset, Some(head)),
            None => (safe, None),
        })
    }

    pub fn partitions(&self) -> Vec<Tp> {
        self.parts.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    #[test]
    fn out_of_order_acks_commit_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::new();
        let h = |o: i64| Some(format!("h{o}"));
        let g = t.begin(&tp(0), 10, 2, h(10));
        t.begin(&tp(0), 11, 1, h(11));
        t.begin(&tp(0), 12, 0, h(12)); // suppressed everywhere: nothing to wait for
        t.begin(&tp(0), 13, 1, h(13));
        assert_eq!(t.safe(&tp(0)), Some(10));
        assert!(t.committable().is_empty());
        t.ack(&tp(0), 11, g);
        t.ack(&tp(0), 13, g);
        assert_eq!(t.safe(&tp(0)), Some(10), "10 still has an output in flight");
        t.ack(&tp(0), 10, g);
        assert_eq!(t.safe(&tp(0)), Some(10));
        t.ack(&tp(0), 10, g);
        assert_eq!(t.safe(&tp(0)), Some(14));
        let c = t.committable();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].offset, c[0].advanced), (14, 4));
        assert!(t.committable().is_empty(), "reported once");
    }

    #[test]
    fn a_head_set_later_goes_with_the_offset_after_it() {
        let mut t = OffsetTracker::new();
        let g = t.begin(&tp(0), 3, 1, None);
        t.begin(&tp(0), 4, 1, None);
        t.set_head(&tp(0), 4, g, "s1".into());
        t.set_head(&tp(0), 4, g + 1, "stale".into());
        t.ack(&tp(0), 3, g);
        assert!(
            t.committable().is_empty(),
            "3 is done but its summary's head is at 4: nothing to commit yet"
        );
        t.ack(&tp(0), 4, g);
        let c = t.committable();
        assert_eq!((c[0].offset, c[0].head.clone()), (5, Some("s1".into())));
        t.remove(&tp(0));
        t.set_head(&tp(0), 9, g, "gone".into());
        assert!(
            t.partitions().is_empty(),
            "a revoked partition is not tracked again"
        );
    }

    #[test]
    fn with_summaries_offsets_are_committed_at_summary_ends_only() {
        // A summary covering 0..=2 is acknowledged while 1 still has an
        // output in flight: 0 is done, but its offset must not travel
        // without a head (the next owner would restart the chain).
        let mut t = OffsetTracker::new();
        let g = t.begin(&tp(0), 0, 1, None);
        t.begin(&tp(0), 1, 1, None);
        t.begin(&tp(0), 2, 1, None);
        t.set_head(&tp(0), 2, g, "s1".into());
        t.ack(&tp(0), 0, g);
        t.ack(&tp(0), 2, g);
        assert!(t.committable().is_empty());
        assert_eq!(t.remove(&tp(0)), Some((1, None)), "revoked: no commit");
        // The next summary (3..=5) done while 6 waits: commit at 6 with it.
        let g = t.begin(&tp(0), 3, 1, None);
        for o in 4..=6 {
            t.begin(&tp(0), o, 1, None);
        }
        t.set_head(&tp(0), 5, g, "s2".into());
        for o in 3..=5 {
            t.ack(&tp(0), o, g);
        }
        let c = t.committable();
        assert_eq!((c[0].offset, c[0].head.as_deref()), (6, Some("s2")));
    }

    #[test]
    fn partitions_are_independent_and_removable() {
        let mut t = OffsetTracker::new();
        let g = t.begin(&tp(0), 0, 1, None);
        t.begin(&tp(1), 5, 0, None);
        assert_eq!(t.safe(&tp(1)), Some(6));
        assert_eq!(t.inflight(|_| true), 1);
        assert_eq!(t.inflight(|p| p.1 == 1), 0);
        assert_eq!(t.remove(&tp(0)), Some((0, None)));
        t.ack(&tp(0), 0, g); // late ack of a revoked partition: ignored
        assert_eq!(t.safe(&tp(0)), None);
    }

    #[test]
    fn a_late_ack_from_before_a_revoke_does_not_ack_the_reread_record() {
        let mut t = OffsetTracker::new();
        let old = t.begin(&tp(0), 7, 1, None);
        t.remove(&tp(0)); // revoked after a drain timeout, 7 still in flight
        let new = t.begin(&tp(0), 7, 1, None); // assigned back, 7 read again
        assert_ne!(old, new);
        assert!(!t.is_current(&tp(0), old) && t.is_current(&tp(0), new));
        t.ack(&tp(0), 7, old); // the first copy's delivery report, late
        assert_eq!(
            t.safe(&tp(0)),
            Some(7),
            "the re-read record is still in flight"
        );
        t.ack(&tp(0), 7, new);
        assert_eq!(t.safe(&tp(0)), Some(8));
    }

    #[test]
    fn a_committed_offset_carries_the_chain_head_of_the_record_before_it() {
        let mut t = OffsetTracker::new();
        let g = t.begin(&tp(0), 0, 1, Some("h0".into()));
        t.begin(&tp(0), 1, 1, Some("h1".into()));
        t.begin(&tp(0), 2, 1, Some("h2".into()));
        t.ack(&tp(0), 0, g);
        t.ack(&tp(0), 2, g); // 1 still in flight
        let c = t.committable();
        assert_eq!((c[0].offset, c[0].head.as_deref()), (1, Some("h0")));
        t.ack(&tp(0), 1, g);
        let c = t.committable();
        assert_eq!((c[0].offset, c[0].head.as_deref()), (3, Some("h2")));
        t.begin(&tp(0), 3, 1, Some("h3".into()));
        // Revoked with 3 in flight: commit 3 with the head of 2.
        assert_eq!(t.remove(&tp(0)), Some((3, Some("h2".to_string()))));
    }
}
