//! The embedded broker (`bootstrap_servers = "embedded"`, `custos demo`):
//! librdkafka's in-process mock cluster. It speaks the Kafka protocol on a
//! loopback port, keeps everything in memory and has no admin API, so topic
//! management is skipped and topics are created here.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::WorkerError;

/// An in-process Kafka cluster; dropped, it is gone with its data.
pub struct Embedded {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Embedded {
    /// Starts a cluster of `brokers` brokers.
    ///
    /// # Errors
    /// librdkafka could not start the mock cluster.
    pub fn start(brokers: i32) -> Result<Embedded, WorkerError> {
        Ok(Embedded {
            cluster: MockCluster::new(brokers)?,
        })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic (replication 1).
    ///
    /// # Errors
    /// librdkafka refused.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), WorkerError> {
        Ok(self.cluster.create_topic(name, partitions, 1)?)
    }

    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
