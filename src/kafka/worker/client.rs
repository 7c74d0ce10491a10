//! Client configuration of the group consumer, and reading a consumed
//! record's headers without trusting their encoding.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn consumer_config(
    base: &ClientConfig,
    cfg: &Config,
    static_id: Option<&str>,
) -> ClientConfig {
    let eos = cfg.delivery.guarantee == Guarantee::ExactlyOnce;
    let mut c = base.clone();
    // Defaults the user's `[kafka.properties]` may change.
    for (k, v) in [
        ("statistics.interval.ms", "5000"),
        ("auto.offset.reset", "earliest"),
    ] {
        if c.get(k).is_none() {
            c.set(k, v);
        }
    }
    if let Some(id) = static_id {
        if c.get("group.instance.id").is_none() {
            c.set("group.instance.id", id);
        }
    }
    c.set("group.id", &cfg.kafka.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if eos {
        // Offsets travel in the transaction; inputs written transactionally are read committed.
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    } else {
        c.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000");
    }
    c
}

/// Reads a message's headers without trusting their encoding.
#[allow(unsafe_code)]
pub(crate) fn raw_headers(msg: &BorrowedMessage<'_>) -> pipeline::RawHeaders {
    let Some(h) = msg.headers() else {
        return Vec::new();
    };
    let ptr =
        h as *const rdkafka::message::BorrowedHeaders as *const rdkafka::types::RDKafkaHeaders;
    let mut out = Vec::with_capacity(h.count());
    for idx in 0..h.count() {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: `ptr` is the librdkafka headers object that `BorrowedHeaders`
        // wraps (rdkafka builds the reference from that very pointer), valid
        // for the lifetime of `msg`; `idx` is below its count; librdkafka
        // returns a NUL-terminated name and a value of `size` bytes or null.
        // The bytes are copied before `msg` can go away.
        unsafe {
            let err = rdkafka::bindings::rd_kafka_header_get_all(
                ptr, idx, &mut name, &mut value, &mut size,
            );
            if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                continue;
            }
            let n = std::ffi::CStr::from_ptr(name).to_bytes().to_vec();
            let v = (!value.is_null())
                .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            out.push((n, v));
        }
    }
    out
}
