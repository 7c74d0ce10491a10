//! The last commit of a graceful at_least_once stop.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How the final commit of a graceful at_least_once stop ended.
pub(super) enum FinalCommit {
    Committed,
    /// The group coordinator no longer counts this worker as the owner of
    /// its partitions: there is nothing to commit to.
    GroupMovedOn(KafkaError),
    /// Not committed before the deadline: the last error, if any.
    Failed(Option<KafkaError>),
}

/// Commits the stored offsets, retrying what a moment may cure (coordinator
/// moving or loading, a connection lost, a rebalance under way) until the
/// deadline; tells a group that has moved on (the membership is over) from
/// a failure. A synchronous
/// commit waits for the broker as long as librdkafka's own timeouts say
/// (~45 s with the broker down), so each attempt runs on a thread of its own
/// and is waited for only until the deadline.
pub(super) fn final_commit<X: ConsumerContext + 'static>(
    consumer: &Arc<BaseConsumer<X>>,
    deadline: Instant,
) -> FinalCommit {
    use RDKafkaErrorCode as C;
    loop {
        let (tx, rx) = std::sync::mpsc::channel();
        let c = consumer.clone();
        let spawned = std::thread::Builder::new()
            .name("custos-final-commit".into())
            .spawn(move || {
                let _ = tx.send(c.commit_consumer_state(CommitMode::Sync));
            });
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match spawned.map(|_| rx.recv_timeout(left)) {
            Ok(Ok(Ok(()) | Err(KafkaError::ConsumerCommit(C::NoOffset)))) => {
                return FinalCommit::Committed
            }
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) | Err(_) => return FinalCommit::Failed(None),
        };
        let retry = Instant::now() + COMMIT_RETRY < deadline;
        match e.rdkafka_error_code() {
            // The coordinator says the membership is over.
            Some(C::UnknownMemberId | C::IllegalGeneration | C::StaleMemberEpoch) => {
                return FinalCommit::GroupMovedOn(e)
            }
            // Between join and sync the member is still in the group (and
            // keeps its partitions under cooperative assignment): a moment
            // may do, else the group moves on without this worker.
            Some(C::RebalanceInProgress) if !retry => return FinalCommit::GroupMovedOn(e),
            Some(
                C::RebalanceInProgress
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::RequestTimedOut
                | C::NetworkException
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::WaitingForCoordinator
                | C::TimedOutQueue,
            ) if retry => {
                tracing::debug!(error = %e, "final commit retried");
                std::thread::sleep(COMMIT_RETRY);
            }
            // Not committed, and not known to be moot: fenced (another live
            // worker with this instance id, a configuration error); the
            // assignment given up by librdkafka itself (`AssignmentLost`:
            // typically the session ran out while the coordinator could not
            // be reached); the rest.
            _ => return FinalCommit::Failed(Some(e)),
        }
    }
}

/// The pause between two attempts at the final commit.
const COMMIT_RETRY: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use rdkafka::consumer::DefaultConsumerContext;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;

    const TOPIC: &str = "in";

    /// A cluster with the topic, and a consumer of the group "g" that
    /// commits only when told.
    fn cluster_and_consumer() -> (MockCluster<'static, DefaultProducerContext>, BaseConsumer) {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .unwrap();
        (cluster, consumer)
    }

    /// Stores offset 7 of partition 0, for the next commit.
    fn store_7(consumer: &BaseConsumer) {
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(TOPIC, 0, Offset::Offset(7))
            .unwrap();
        consumer.store_offsets(&at).unwrap();
    }

    /// A consumer assigned partition 0 with offset 7 stored, and the
    /// cluster it talks to.
    fn stored() -> (
        MockCluster<'static, DefaultProducerContext>,
        Arc<BaseConsumer<DefaultConsumerContext>>,
    ) {
        let (cluster, consumer) = cluster_and_consumer();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        store_7(&consumer);
        (cluster, Arc::new(consumer))
    }

    /// The cluster answers the next `codes.len()` offset commits with them.
    fn refuse(cluster: &MockCluster<'static, DefaultProducerContext>, codes: &[RDKafkaRespErr]) {
        cluster.request_errors(RDKafkaApiKey::OffsetCommit, codes);
    }

    fn committed(consumer: &BaseConsumer) -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(TOPIC, 0);
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap();
        got.elements()[0].offset()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn errors_a_moment_cures_are_retried_until_committed() {
        let (cluster, consumer) = stored();
        // More than librdkafka's own two retries of a request.
        refuse(
            &cluster,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            ],
        );
        assert!(matches!(
            final_commit(&consumer, soon()),
            FinalCommit::Committed
        ));
        assert_eq!(committed(&consumer), Offset::Offset(7));
    }

    #[test]
    fn a_generation_that_is_over_is_told_apart_and_not_retried() {
        for code in [
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
        ] {
            let (cluster, consumer) = stored();
            // Twice: a retry would meet the second one and not commit either.
            refuse(&cluster, &[code, code]);
            assert!(
                matches!(
                    final_commit(&consumer, soon()),
                    FinalCommit::GroupMovedOn(_)
                ),
                "{code:?}"
            );
            assert_eq!(committed(&consumer), Offset::Invalid, "{code:?}");
        }
    }

    #[test]
    fn a_rebalance_that_outlasts_the_deadline_moves_the_group_on() {
        let (cluster, consumer) = stored();
        refuse(
            &cluster,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 200],
        );
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            final_commit(&consumer, deadline),
            FinalCommit::GroupMovedOn(_)
        ));
        assert_eq!(committed(&consumer), Offset::Invalid);
    }

    #[test]
    fn a_session_run_out_while_the_broker_is_away_is_a_failure() {
        // The broker unreachable for longer than the session timeout:
        // librdkafka marks the assignment lost and fails the commit itself.
        // Nothing confirms that the group moved on: the stop did not finish.
        let (cluster, consumer) = cluster_and_consumer();
        consumer.subscribe(&[TOPIC]).unwrap();
        let waited = Instant::now();
        while consumer.assignment().map_or(0, |a| a.count()) == 0 {
            assert!(waited.elapsed() < Duration::from_secs(60), "no assignment");
            let _ = consumer.poll(Duration::from_millis(100));
        }
        store_7(&consumer);
        cluster.broker_down(1).unwrap();
        let waited = Instant::now();
        while !consumer.assignment_lost() {
            assert!(waited.elapsed() < Duration::from_secs(60), "never lost");
            std::thread::sleep(Duration::from_millis(100));
        }
        let consumer = Arc::new(consumer);
        let outcome = final_commit(&consumer, soon());
        assert!(
            matches!(
                &outcome,
                FinalCommit::Failed(Some(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AssignmentLost)
            ),
            "{}",
            match outcome {
                FinalCommit::Committed => "committed".to_string(),
                FinalCommit::GroupMovedOn(e) | FinalCommit::Failed(Some(e)) => e.to_string(),
                FinalCommit::Failed(None) => "no answer".to_string(),
            }
        );
        cluster.broker_up(1).unwrap();
        // Not closed, as the worker does not close it either: librdkafka's
        // destroy of a consumer whose assignment was lost this way does not
        // return (its broker thread spins).
        std::mem::forget(consumer);
    }

    #[test]
    fn a_permanent_error_fails_at_once() {
        let (cluster, consumer) = stored();
        // Three times: a retry would meet the next one, a third the last.
        refuse(
            &cluster,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 3],
        );
        assert!(matches!(
            final_commit(&consumer, soon()),
            FinalCommit::Failed(Some(_))
        ));
        assert_eq!(committed(&consumer), Offset::Invalid);
    }

    #[test]
    fn fenced_by_another_instance_fails() {
        // A second live worker with this instance id: a configuration
        // error, not a group that moved on.
        let (cluster, consumer) = stored();
        refuse(
            &cluster,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 3],
        );
        let outcome = final_commit(&consumer, soon());
        let failed = matches!(outcome, FinalCommit::Failed(_));
        // librdkafka makes a fence fatal: its destroy of the client does
        // not return, and the worker does not close it either.
        std::mem::forget(consumer);
        assert!(failed);
    }

    #[test]
    fn a_broker_that_does_not_answer_fails_at_the_deadline() {
        let (cluster, consumer) = stored();
        cluster.broker_down(1).unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        assert!(matches!(
            final_commit(&consumer, deadline),
            FinalCommit::Failed(_)
        ));
        // Not librdkafka's own timeout (~45 s with the broker down): the
        // deadline, give or take one retry pause and a loaded machine.
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "returned {:?} after the deadline",
            Instant::now() - deadline
        );
        cluster.broker_up(1).unwrap();
    }
}
