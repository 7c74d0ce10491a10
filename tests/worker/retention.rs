//! Retention tombstones for compacted outputs, with an injected clock.

use custos::kafka::retention::Clock;

use super::*;

const DAY: i64 = 86_400_000;

#[test]
fn keys_whose_last_write_is_past_retention_are_tombstoned_once() {
    let broker = Broker::from_env();
    let n = Names::new();
    // analytics is compacted (its key: the subject's pseudonym).
    create_topics(&broker, &n, 1, true);
    let compiled = compile_with_retention(&n, "30d");
    let b = broker.bootstrap();
    let p = producer(&b);
    let now = custos::kafka::now_ms();
    // s-0 and s-1 last wrote 20 days ago; s-2 wrote 20 days ago and again now.
    let at = |user: &str, i: u64, ts: i64| {
        let v = serde_json::to_vec(&json!({"user": user, "n": i})).unwrap();
        (user.to_string(), v, ts)
    };
    let records = [
        at("s-0", 0, now - 20 * DAY),
        at("s-1", 1, now - 20 * DAY),
        at("s-2", 2, now - 20 * DAY),
        at("s-2", 3, now),
    ];
    for (k, v, ts) in &records {
        let r = BaseRecord::<str, [u8]>::to(&n.input)
            .key(k.as_str())
            .payload(&v[..])
            .timestamp(*ts);
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    // The sweeper's clock is 15 days ahead: the 20-day-old writes are 35
    // days old to it, past analytics' 30 days; the fresh one is 15.
    let clock = Clock(Arc::new(move || custos::kafka::now_ms() + 15 * DAY));
    let options = |instance: &str| Options {
        skip_topic_management: true,
        instance_id: Some(instance.into()),
        assume_compacted: vec![n.analytics.clone()],
        retention_clock: clock.clone(),
        retention_interval: Some(Duration::from_millis(500)),
        ..Options::default()
    };
    let w = start_options(
        &broker,
        &compiled,
        config(&n, "at_least_once"),
        options("w1"),
    );
    let mut a = Reader::new(&b, &n.analytics);
    wait_until("4 outputs and 2 tombstones", || {
        a.poll();
        a.seen.len() >= 6
    });
    let tombstones = |a: &Reader| -> Vec<String> {
        a.seen
            .iter()
            .filter(|(_, v, _)| v == &json!(""))
            .map(|(k, _, _)| k.clone().unwrap())
            .collect()
    };
    wait_until("the metric", || {
        total(&w.metrics.retention_tombstones, |l| {
            l.contains(&("purpose", "analytics"))
        }) == 2
    });
    let mut audit = Reader::new(&b, &n.audit);
    wait_until("the retention audit record", || {
        audit.poll();
        audit.seen.iter().any(|(_, v, _)| v["type"] == "retention")
    });
    w.stop();
    a.poll();
    // The keys of s-0 and s-1 (their pseudonyms), not s-2's.
    let key_of = |i: u64| {
        a.seen
            .iter()
            .find(|(_, v, _)| v["n"].as_u64() == Some(i))
            .and_then(|(k, _, _)| k.clone())
            .unwrap()
    };
    let mut got = tombstones(&a);
    got.sort();
    let mut expected = vec![key_of(0), key_of(1)];
    expected.sort();
    assert_eq!(got, expected);
    assert!(!got.contains(&key_of(3)));
    let (_, record, _) = audit
        .seen
        .iter()
        .find(|(_, v, _)| v["type"] == "retention")
        .unwrap();
    assert_eq!(record["tombstones"], 2);
    assert_eq!(record["purpose"], "analytics");
    assert_eq!(record["source"]["topic"], json!(n.analytics));
    verify_audit(&audit);

    // A restart rebuilds the schedule from the topic. Its clock is 50 days
    // ahead: s-2's fresh write is past retention now too, while s-0's and
    // s-1's keys, tombstoned already, are not due again. The sweep that
    // finds s-2's key due would find theirs too: it writes s-2's alone.
    let s2_key = key_of(3);
    let later = Clock(Arc::new(move || custos::kafka::now_ms() + 50 * DAY));
    let w = start_options(
        &broker,
        &compiled,
        config(&n, "at_least_once"),
        Options {
            retention_clock: later,
            ..options("w1")
        },
    );
    let metrics = w.metrics.clone();
    wait_until("s-2's tombstone", || {
        a.poll();
        tombstones(&a).len() >= 3
    });
    wait_until("the restarted worker's count", || {
        total(&metrics.retention_tombstones, |_| true) >= 1
    });
    w.stop();
    a.poll();
    let got = tombstones(&a);
    assert_eq!(got.len(), 3, "no key tombstoned twice: {got:?}");
    assert_eq!(got[2], s2_key);
    assert_eq!(total(&metrics.retention_tombstones, |_| true), 1);
}

const SUBJECTS: u64 = 20;

#[test]
fn a_rebalance_hands_the_schedule_to_the_new_owner_and_no_key_is_tombstoned_twice() {
    let broker = Broker::from_env();
    let n = Names::new();
    // analytics is compacted (its key: the subject's pseudonym).
    create_topics(&broker, &n, 2, true);
    let compiled = compile_with_retention(&n, "30d");
    let b = broker.bootstrap();
    let p = producer(&b);
    // Twenty subjects, one event each, written 20 days ago: keys in both
    // analytics partitions (all in one: one chance in 2^19).
    let written = custos::kafka::now_ms() - 20 * DAY;
    for i in 0..SUBJECTS {
        let user = format!("s-{i}");
        let v = serde_json::to_vec(
            &json!({"user": user, "n": i, "email": format!("{user}@example.com")}),
        )
        .unwrap();
        let r = BaseRecord::<str, [u8]>::to(&n.input)
            .key(user.as_str())
            .payload(&v[..])
            .timestamp(written);
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let options = |instance: &str, ahead: i64| Options {
        skip_topic_management: true,
        instance_id: Some(instance.into()),
        assume_compacted: vec![n.analytics.clone()],
        retention_clock: Clock(Arc::new(move || custos::kafka::now_ms() + ahead)),
        retention_interval: Some(Duration::from_millis(500)),
        ..Options::default()
    };
    // The first worker's clock says now: nothing is due to it (20 days).
    let one = start_options(
        &broker,
        &compiled,
        config(&n, "at_least_once"),
        options("w1", 0),
    );
    let mut a = Reader::new(&b, &n.analytics);
    wait_until("every analytics output", || {
        a.poll();
        a.seen.len() >= SUBJECTS as usize
    });
    // The second's is 50 days ahead: every key is due to it (70 days), but
    // only in the partitions the rebalance gives it; when the first stops,
    // it takes the others and rebuilds their schedules from the topic.
    let two = start_options(
        &broker,
        &compiled,
        config(&n, "at_least_once"),
        options("w2", 50 * DAY),
    );
    let second = two.metrics.clone();
    wait_until("the second worker's first tombstones", || {
        total(&second.retention_tombstones, |_| true) >= 1
    });
    let first = one.metrics.clone();
    one.stop();
    let tombstoned = |a: &Reader| -> Vec<String> {
        a.seen
            .iter()
            .filter(|(_, v, _)| v == &json!(""))
            .map(|(k, _, _)| k.clone().unwrap())
            .collect()
    };
    wait_until("every subject's key tombstoned", || {
        a.poll();
        tombstoned(&a).len() >= SUBJECTS as usize
    });
    wait_until("the second worker's count", || {
        total(&second.retention_tombstones, |_| true) >= SUBJECTS
    });
    two.stop();
    a.poll();
    let mut got = tombstoned(&a);
    got.sort();
    let mut keys: Vec<String> = a
        .seen
        .iter()
        .filter(|(_, v, _)| v != &json!(""))
        .map(|(k, _, _)| k.clone().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(got, keys, "each key tombstoned once");
    assert_eq!(total(&first.retention_tombstones, |_| true), 0);
    assert_eq!(total(&second.retention_tombstones, |_| true), SUBJECTS);
}
