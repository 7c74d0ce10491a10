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
/// moving or loading, a connection lost) until the deadline. A synchronous
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
        match e.rdkafka_error_code() {
            Some(
                C::UnknownMemberId
                | C::IllegalGeneration
                | C::RebalanceInProgress
                | C::FencedInstanceId,
            ) => return FinalCommit::GroupMovedOn(e),
            Some(
                C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::RequestTimedOut
                | C::NetworkException
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::WaitingForCoordinator
                | C::TimedOutQueue,
            ) if Instant::now() + COMMIT_RETRY < deadline => {
                tracing::debug!(error = %e, "final commit retried");
                std::thread::sleep(COMMIT_RETRY);
            }
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

    /// A consumer of the group "g" with offset 7 of partition 0 stored, and
    /// the cluster it talks to.
    fn stored() -> (
        MockCluster<'static, DefaultProducerContext>,
        Arc<BaseConsumer<DefaultConsumerContext>>,
    ) {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(TOPIC, 0, Offset::Offset(7))
            .unwrap();
        consumer.store_offsets(&at).unwrap();
        (cluster, Arc::new(consumer))
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
        cluster.request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            ],
        );
        assert!(matches!(
            final_commit(&consumer, soon()),
            FinalCommit::Committed
        ));
        assert_eq!(committed(&consumer), Offset::Offset(7));
    }

    #[test]
    fn a_lost_membership_is_told_apart_and_not_retried() {
        for code in [
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        ] {
            let (cluster, consumer) = stored();
            // Twice: a retry would meet the second one and not commit either.
            cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[code, code]);
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
    fn a_permanent_error_fails_at_once() {
        let (cluster, consumer) = stored();
        cluster.request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        );
        let started = Instant::now();
        assert!(matches!(
            final_commit(&consumer, started + Duration::from_secs(60)),
            FinalCommit::Failed(Some(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(60));
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
        cluster.broker_up(1).unwrap();
    }
}
