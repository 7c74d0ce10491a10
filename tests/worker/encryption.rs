//! `encrypt` in the worker: per-subject data keys on the keys topic, one
//! key per subject however many workers race for it, keys that survive a
//! restart, and crypto-shredding on erasure.

use std::collections::{BTreeMap, BTreeSet};

use custos::crypto::{self, DecryptCounts, KeyIndex, KEY_DESTROYED};

use super::*;

const KEK: &[u8] = b"worker-test-kek-0123456789abcdef";

struct Enc {
    n: Names,
    keys: String,
    compiled: Arc<Compiled>,
    /// The policy's text (for the binary, which reads it from a file).
    policy: String,
}

/// Topics, and a policy whose marketing purpose gets the e-mail encrypted
/// (and no consent needed: contract).
fn enc_setup(broker: &Broker) -> Enc {
    let n = Names::new();
    let keys = unique("keys");
    setup(broker, &n, 2);
    broker.create_topic(&keys, 1, true);
    let text = policy_text(&n, "30d")
        .replace(
            "keys: { k: { env: CUSTOS_TEST_KEY } }",
            "keys: { k: { env: CUSTOS_TEST_KEY }, kek: { env: CUSTOS_TEST_KEK } }",
        )
        .replace("basis: consent", "basis: contract")
        .replace(
            "- { classes: [internal, pii.contact.email], action: keep }",
            "- { classes: [internal], action: keep }\n      - { classes: [pii.contact.email], action: { encrypt: { key: kek } } }",
        );
    let p = policy::load(&text, "wtest.yaml").unwrap();
    let compiled = Arc::new(
        policy::plan::compile(
            Arc::new(p),
            &Keys::from_pairs([("k", b"test-key".to_vec()), ("kek", KEK.to_vec())]),
        )
        .unwrap(),
    );
    assert!(compiled.encrypts());
    Enc {
        n,
        keys,
        compiled,
        policy: text,
    }
}

fn enc_config(e: &Enc, group: &str) -> Config {
    enc_config_with(e, group, "at_least_once")
}

fn enc_config_with(e: &Enc, group: &str, guarantee: &str) -> Config {
    let text = enc_config_text(e, group, guarantee, "set-by-test", "unused.yaml");
    Config::parse(&text, "test", Default::default()).unwrap()
}

fn enc_config_text(e: &Enc, group: &str, guarantee: &str, bootstrap: &str, policy: &str) -> String {
    let n = &e.n;
    format!(
        "policy = \"{policy}\"\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\nmanage_topics = false\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[delivery]\nguarantee = \"{guarantee}\"\n[dead_letter]\ntopic = \"{}\"\n[audit]\ntopic = \"{}\"\n[lineage]\ntopic = \"{}\"\n[encryption]\nkeys_topic = \"{}\"\n",
        n.dead_letter, n.audit, n.lineage, e.keys
    )
}

/// The policy and a worker configuration in `dir`, for the custos binary:
/// the configuration's path.
fn config_files(e: &Enc, dir: &std::path::Path, bootstrap: &str) -> std::path::PathBuf {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &e.policy).unwrap();
    let cfg = dir.join("custos.toml");
    let text = enc_config_text(
        e,
        "custos-cli",
        "at_least_once",
        bootstrap,
        policy.to_str().unwrap(),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The keys topic read from the beginning: the live keys, and every record
/// key with whether it was a tombstone.
fn read_keys(bootstrap: &str, e: &Enc) -> (KeyIndex, Vec<(String, bool)>) {
    let (index, records, skipped) = read_keys_with(bootstrap, &e.keys, &e.compiled);
    assert_eq!(skipped, 0, "every keys record unwraps");
    (index, records)
}

/// The keys topic read from the beginning (as [`read_keys`]), and the number
/// of records that did not unwrap (skipped, as `custos decrypt` skips them).
fn read_keys_with(
    bootstrap: &str,
    topic: &str,
    compiled: &Compiled,
) -> (KeyIndex, Vec<(String, bool)>, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("keys-reader"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let keks = compiled.keks();
    let mut index = KeyIndex::default();
    let mut records = Vec::new();
    let mut skipped = 0;
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "keys topic not read to its end");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key = m.key().unwrap();
                if index.apply(&keks, key, m.payload()).is_err() {
                    skipped += 1;
                }
                records.push((
                    String::from_utf8(key.to_vec()).unwrap(),
                    m.payload().is_none(),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    (index, records, skipped)
}

/// An output record as `custos decrypt` reads it.
fn line(seen: &Seen) -> Value {
    let headers: serde_json::Map<String, Value> = seen
        .2
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({ "key": seen.0, "value": seen.1, "headers": headers })
}

/// Decrypts every output as `custos decrypt` does: each e-mail is its
/// user's again.
fn assert_every_email_decrypts(index: &KeyIndex, seen: &[Seen]) -> DecryptCounts {
    let mut counts = DecryptCounts::default();
    for seen in seen {
        let mut l = line(seen);
        custos::cli::decrypt::decrypt_line(index, &mut l, &mut counts).unwrap();
        assert_email_is_its_users(&l);
    }
    counts
}

/// An output line decrypted: its e-mail is its user's (events are for
/// s-(n % 5)).
fn assert_email_is_its_users(l: &Value) {
    let user = format!("s-{}", l["value"]["n"].as_u64().unwrap() % 5);
    assert_eq!(
        l["value"]["email"],
        json!(format!("{user}@example.com")),
        "{l}"
    );
}

/// Produces 20 events (5 subjects) and starts worker `w1` under
/// `guarantee`; returns once the marketing purpose's 20 encrypted outputs
/// are readable as a downstream reader reads them.
fn twenty_encrypted(broker: &Broker, e: &Enc, guarantee: &str) -> (BaseProducer, Running, Reader) {
    let b = broker.bootstrap();
    let p = producer(&b);
    produce(&p, &e.n.input, &(0..20).map(event).collect::<Vec<_>>());
    let w = start_instance(
        broker,
        &e.compiled,
        false,
        enc_config_with(e, &e.n.group, guarantee),
        "w1",
    );
    let mut m = Reader::for_guarantee(&b, &e.n.marketing, guarantee);
    wait_until("20 marketing outputs", || {
        m.poll();
        m.seen.len() >= 20
    });
    (p, w, m)
}

/// Every subject's e-mails are under one key: the key ids by user.
fn one_key_per_subject(seen: &[Seen]) -> BTreeMap<String, BTreeSet<String>> {
    let ids = key_ids(seen);
    assert_eq!(ids.len(), 5);
    assert!(ids.values().all(|s| s.len() == 1), "{ids:?}");
    ids
}

/// The custos binary with the test policy's secrets in its environment
/// (`kek`: the KEK secret; a pseudonym key long enough for the CLI, which
/// refuses short keys where the worker only warns).
fn custos_cli(args: &[&std::ffi::OsStr], kek: &str, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .env(
            "CUSTOS_TEST_KEY",
            "a-pseudonym-key-long-enough-for-the-cli-0123",
        )
        .env("CUSTOS_TEST_KEK", kek)
        .env("CUSTOS_AUDIT_KEY", std::str::from_utf8(AUDIT_KEY).unwrap())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The key id of every e-mail token, by user.
fn key_ids(seen: &[Seen]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, v, _) in seen {
        let token = v["email"].as_str().unwrap();
        assert!(token.starts_with(crypto::TOKEN_PREFIX), "{v}");
        let id = hex::encode(crypto::token_key_id(token).unwrap());
        // The marketing output keeps `n`; events are for s-(n % 5).
        let user = format!("s-{}", v["n"].as_u64().unwrap() % 5);
        out.entry(user).or_default().insert(id);
    }
    out
}

#[test]
fn encrypted_values_decrypt_with_the_keys_topic_survive_a_restart_and_erasure_shreds_them() {
    let broker = Broker::from_env();
    let e = enc_setup(&broker);
    let b = broker.bootstrap();
    let (p, w, mut m) = twenty_encrypted(&broker, &e, "at_least_once");
    assert_eq!(w.metrics.data_keys_created.get(), 5, "one key per subject");
    w.stop();

    // One key per subject, and every value decrypts with the keys topic.
    let ids = one_key_per_subject(&m.seen);
    let (index, records) = read_keys(&b, &e);
    assert_eq!(index.len(), 5);
    assert_eq!(records.len(), 5);
    let counts = assert_every_email_decrypts(&index, &m.seen);
    assert_eq!(counts.decrypted, 20);
    // The keys topic holds no subject id and no key in the clear.
    for (k, _) in &records {
        assert!(!k.contains("s-"), "{k}");
    }

    // A restart reads the keys back: the same subjects keep their keys.
    let w = start_instance(
        &broker,
        &e.compiled,
        false,
        enc_config(&e, &e.n.group),
        "w1",
    );
    produce(&p, &e.n.input, &(20..30).map(event).collect::<Vec<_>>());
    wait_until("30 marketing outputs", || {
        m.poll();
        m.seen.len() >= 30
    });
    assert_eq!(w.metrics.data_keys_created.get(), 0);
    assert_eq!(key_ids(&m.seen), ids);

    // Erasure: s-1's key is tombstoned; its values no longer decrypt, the
    // others' still do.
    produce(
        &p,
        &e.n.erasure,
        &[(Some("s-1".into()), br#"{"subject":"s-1"}"#.to_vec())],
    );
    wait_until("s-1's key destroyed", || {
        w.metrics.data_keys_destroyed.get() == 1
    });
    let mut audit = Reader::new(&b, &e.n.audit);
    wait_until("the erasure audit record", || {
        audit.poll();
        audit.seen.iter().any(|(_, v, _)| v["type"] == "erasure")
    });
    w.stop();
    let (_, record, _) = audit
        .seen
        .iter()
        .find(|(_, v, _)| v["type"] == "erasure")
        .unwrap();
    assert_eq!(record["actions"]["data_keys"]["destroyed"], true);
    assert_eq!(record["actions"]["data_keys"]["keks"], json!(["kek"]));
    assert_eq!(
        record["subject"],
        json!(AuditKey::new(AUDIT_KEY).subject("s-1"))
    );
    let (index, records) = read_keys(&b, &e);
    assert_eq!(index.len(), 4);
    assert_eq!(records.iter().filter(|(_, tomb)| *tomb).count(), 1);
    let mut counts = DecryptCounts::default();
    for seen in &m.seen {
        let mut l = line(seen);
        custos::cli::decrypt::decrypt_line(&index, &mut l, &mut counts).unwrap();
        let n = l["value"]["n"].as_u64().unwrap();
        let expected = if n % 5 == 1 {
            json!(KEY_DESTROYED)
        } else {
            json!(format!("s-{}@example.com", n % 5))
        };
        assert_eq!(l["value"]["email"], expected, "n = {n}");
    }
    assert_eq!(
        (counts.decrypted, counts.destroyed, counts.failed),
        (24, 6, 0)
    );
}

#[test]
fn under_exactly_once_committed_outputs_are_encrypted_and_decrypt_with_the_keys_topic() {
    let broker = Broker::from_env();
    let e = enc_setup(&broker);
    let b = broker.bootstrap();
    // Read as downstream readers do: committed transactions only.
    let (_, w, mut m) = twenty_encrypted(&broker, &e, "exactly_once");
    w.stop();
    m.poll();
    assert_eq!(m.seen.len(), 20, "each output once");
    one_key_per_subject(&m.seen);
    let (index, _) = read_keys(&b, &e);
    let counts = assert_every_email_decrypts(&index, &m.seen);
    assert_eq!((counts.decrypted, counts.failed), (20, 0));

    // `custos decrypt --config` (the binary) reads the keys topic itself
    // and gives every e-mail back.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_files(&e, dir.path(), &b);
    let input = dir.path().join("outputs.ndjson");
    let lines: String = m.seen.iter().map(|s| format!("{}\n", line(s))).collect();
    std::fs::write(&input, lines).unwrap();
    let out = custos_cli(
        &[
            "decrypt".as_ref(),
            "--config".as_ref(),
            cfg.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
        ],
        std::str::from_utf8(KEK).unwrap(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decrypted: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decrypted.len(), 20);
    for l in &decrypted {
        assert_email_is_its_users(l);
    }
}

#[test]
fn a_keys_topic_of_more_than_one_partition_refuses_the_start() {
    let broker = Broker::from_env();
    let mut e = enc_setup(&broker);
    // One key per subject rests on the order of one partition.
    e.keys = unique("keys");
    broker.create_topic(&e.keys, 2, true);
    let w = start_instance(
        &broker,
        &e.compiled,
        false,
        enc_config(&e, &e.n.group),
        "w1",
    );
    let err = w
        .handle
        .join()
        .expect("worker thread")
        .expect_err("the worker must not start on a keys topic of two partitions");
    assert!(err.to_string().contains("needs exactly one"), "{err}");
    assert!(err.to_string().contains(&e.keys), "{err}");
}

#[test]
fn two_workers_starting_at_once_agree_on_one_key_per_subject() {
    let broker = Broker::from_env();
    let e = enc_setup(&broker);
    let b = broker.bootstrap();
    let p = producer(&b);
    // Both workers govern the same events (two groups), so every subject's
    // first event reaches both at about the same time.
    let events: Vec<_> = (0..200)
        .map(|i| {
            let user = format!("s-{}", i % 40);
            (
                Some(user.clone()),
                serde_json::to_vec(
                    &json!({"user": user, "n": i, "email": format!("{user}@example.com")}),
                )
                .unwrap(),
            )
        })
        .collect();
    produce(&p, &e.n.input, &events);
    let g2 = unique("group");
    let w1 = start_instance(&broker, &e.compiled, false, enc_config(&e, &e.n.group), "a");
    let w2 = start_instance(&broker, &e.compiled, false, enc_config(&e, &g2), "b");
    let mut m = Reader::new(&b, &e.n.marketing);
    wait_until("400 marketing outputs", || {
        m.poll();
        m.seen.len() >= 400
    });
    let created = w1.metrics.data_keys_created.get() + w2.metrics.data_keys_created.get();
    w1.stop();
    w2.stop();
    let mut ids: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (_, v, _) in &m.seen {
        let id = hex::encode(crypto::token_key_id(v["email"].as_str().unwrap()).unwrap());
        ids.entry(v["n"].as_u64().unwrap() % 40)
            .or_default()
            .insert(id);
    }
    assert_eq!(ids.len(), 40);
    for (user, set) in &ids {
        assert_eq!(set.len(), 1, "subject s-{user} got {} keys", set.len());
    }
    // Candidates that lost were tombstoned by their writers: one live key
    // per subject is left.
    let (index, records) = read_keys(&b, &e);
    assert_eq!(index.len(), 40, "{created} candidates written");
    let live: BTreeSet<&str> = records
        .iter()
        .filter(|(_, t)| !t)
        .map(|(k, _)| k.as_str())
        .filter(|k| !records.iter().any(|(k2, t)| *t && k2 == k))
        .collect();
    assert_eq!(live.len(), 40);
}

#[test]
fn racing_for_a_subject_key_always_ends_in_one_key() {
    use custos::crypto::KeySource;
    use custos::kafka::keys::KafkaKeys;
    let broker = Broker::from_env();
    let e = enc_setup(&broker);
    let base = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .clone();
    let start = || {
        let (keys, _reader) = KafkaKeys::start(
            &base,
            &e.keys,
            &e.compiled,
            &AuditKey::new(AUDIT_KEY),
            &Control::default(),
            Duration::from_secs(30),
            &Metrics::new(),
        )
        .unwrap()
        .expect("the policy encrypts");
        keys
    };
    let (a, b) = (start(), start());
    // Two workers ask for the same new subject at the same instant, 30 times.
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let ask = |keys: Arc<KafkaKeys>, barrier: Arc<std::sync::Barrier>| {
        std::thread::spawn(move || {
            (0..30)
                .map(|i| {
                    barrier.wait();
                    *keys.data_key("kek", &format!("c-{i}")).unwrap().id()
                })
                .collect::<Vec<_>>()
        })
    };
    let ta = ask(a.clone(), barrier.clone());
    let tb = ask(b.clone(), barrier);
    let (ia, ib) = (ta.join().unwrap(), tb.join().unwrap());
    assert_eq!(ia, ib, "both workers use the same key for every subject");
    assert_eq!(ia.iter().collect::<BTreeSet<_>>().len(), 30);
    // A race writes two candidates; each loser is tombstoned by its writer.
    let mut candidates = 0;
    wait_until("losers tombstoned", || {
        let (index, records) = read_keys(&broker.bootstrap(), &e);
        let tombstones = records.iter().filter(|(_, t)| *t).count();
        candidates = records.len() - tombstones;
        index.len() == 30 && candidates == 30 + tombstones
    });
    assert!(candidates > 30, "no race happened: the test proved nothing");
    // A third worker starting later reads the same keys.
    let c = start();
    for (i, id) in ia.iter().enumerate() {
        assert_eq!(c.data_key("kek", &format!("c-{i}")).unwrap().id(), id);
    }
}

#[test]
fn kek_rotation_rewraps_keys_and_old_outputs_still_decrypt() {
    use custos::crypto::KeySource;
    use custos::kafka::keys::KafkaKeys;
    let broker = Broker::from_env();
    let e = enc_setup(&broker);
    let b = broker.bootstrap();
    produce(
        &producer(&b),
        &e.n.input,
        &(0..10).map(event).collect::<Vec<_>>(),
    );
    let w = start_instance(
        &broker,
        &e.compiled,
        false,
        enc_config(&e, &e.n.group),
        "w1",
    );
    let mut m = Reader::new(&b, &e.n.marketing);
    wait_until("10 marketing outputs", || {
        m.poll();
        m.seen.len() >= 10
    });
    w.stop();
    let before = key_ids(&m.seen);

    // The policy's KEK secret is now a new one.
    let new_kek = b"the-new-kek-secret-0123456789abc".to_vec();
    let rotated_policy = Arc::new(
        policy::plan::compile(
            e.compiled.policy.clone(),
            &Keys::from_pairs([("k", b"test-key".to_vec()), ("kek", new_kek)]),
        )
        .unwrap(),
    );
    let base = ClientConfig::new().set("bootstrap.servers", &b).clone();
    let keys_with = |c: &Arc<Compiled>| {
        KafkaKeys::start(
            &base,
            &e.keys,
            c,
            &AuditKey::new(AUDIT_KEY),
            &Control::default(),
            Duration::from_secs(30),
            &Metrics::new(),
        )
        .unwrap()
        .unwrap()
        .0
    };
    // Before the rotation a worker with only the new KEK cannot unwrap the
    // keys: it stops rather than make a second key for a subject.
    let early = keys_with(&rotated_policy);
    assert!(early.data_key("kek", "s-0").is_err());
    assert!(
        early.failure().unwrap().contains("KEK"),
        "{:?}",
        early.failure()
    );

    // `custos keys rotate` (the binary): the policy's secret is the new
    // KEK, the previous one comes from another variable.
    let dir = tempfile::tempdir().unwrap();
    let files = config_files(&e, dir.path(), &b);
    let out = custos_cli(
        &[
            "keys".as_ref(),
            "rotate".as_ref(),
            "--config".as_ref(),
            files.as_os_str(),
            "--from-env".as_ref(),
            "CUSTOS_TEST_OLD_KEK".as_ref(),
        ],
        "the-new-kek-secret-0123456789abc",
        &[("CUSTOS_TEST_OLD_KEK", std::str::from_utf8(KEK).unwrap())],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("5 data key(s) re-wrapped under the current KEK, 0 already under it"),
        "{said}"
    );
    let mut cfg = enc_config(&e, &e.n.group);
    cfg.kafka.bootstrap_servers = b.clone();
    // Idempotent: a second run finds everything under the new KEK.
    let again = custos::cli::keys::rotate(&cfg, &rotated_policy, None, KEK).unwrap();
    assert_eq!((again.rewrapped, again.current), (0, 5));

    // The same keys, now under the new KEK; the old outputs decrypt.
    let after = keys_with(&rotated_policy);
    for (user, ids) in &before {
        let id = hex::encode(after.data_key("kek", user).unwrap().id());
        assert_eq!(ids.iter().next().unwrap(), &id);
    }
    assert!(after.failure().is_none());
    // The records as they were before the rotation are skipped (compaction
    // removes them); their re-wrapped successors give every key.
    let (index, _, skipped) = read_keys_with(&b, &e.keys, &rotated_policy);
    assert_eq!((index.len(), skipped), (5, 5));
    let mut counts = DecryptCounts::default();
    for seen in &m.seen {
        custos::cli::decrypt::decrypt_line(&index, &mut line(seen), &mut counts).unwrap();
    }
    assert_eq!((counts.decrypted, counts.failed), (10, 0));
}
