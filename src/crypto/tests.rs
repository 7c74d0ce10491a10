use serde_json::json;

use super::*;

fn audit() -> AuditKey {
    AuditKey::new(b"audit-key-for-tests-0123456789ab")
}

fn ring() -> KeyRing {
    KeyRing::new(
        vec![
            Kek::new("kek", b"kek-secret-0123456789abcdef-0123"),
            Kek::new("other", b"other-secret-0123456789abcdef-01"),
        ],
        &audit(),
    )
}

#[test]
fn a_token_opens_only_where_it_was_made() {
    let key = DataKey::new(&[7u8; 32]);
    let m = |n: &'static [u8]| Seg::Member(n);
    let here = aad("shop.orders/0/5", "support", [m(b"customer"), m(b"email")]);
    let token = key.seal(&here, br#""a@example.com""#);
    assert!(token.starts_with(TOKEN_PREFIX));
    assert_eq!(key.open(&here, &token).unwrap(), br#""a@example.com""#);
    // Another field, another event, another key, a changed byte: refused.
    let field = aad("shop.orders/0/5", "support", [m(b"customer"), m(b"name")]);
    assert_eq!(key.open(&field, &token), Err(OpenError::Tampered));
    let event = aad("shop.orders/0/6", "support", [m(b"customer"), m(b"email")]);
    assert_eq!(key.open(&event, &token), Err(OpenError::Tampered));
    let purpose = aad(
        "shop.orders/0/5",
        "analytics",
        [m(b"customer"), m(b"email")],
    );
    assert_eq!(key.open(&purpose, &token), Err(OpenError::Tampered));
    assert_eq!(
        DataKey::new(&[8u8; 32]).open(&here, &token),
        Err(OpenError::OtherKey)
    );
    let mut raw = B64.decode(&token[TOKEN_PREFIX.len()..]).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let changed = format!("{TOKEN_PREFIX}{}", B64.encode(&raw));
    assert_eq!(key.open(&here, &changed), Err(OpenError::Tampered));
    assert_eq!(key.open(&here, "enc:v1:AAAA"), Err(OpenError::NotAToken));
    // Two encryptions of one value differ (random nonces).
    assert_ne!(token, key.seal(&here, br#""a@example.com""#));
    assert_eq!(token_key_id(&token), Some(*key.id()));
}

#[test]
fn places_are_not_ambiguous() {
    use Seg::{Element, Header, Key, Member};
    // Joined names would collide (a NUL inside a member name is legal
    // JSON); a member named like the key, a header or an element must not
    // pass for them (red-team and review findings).
    let distinct = [
        aad("s", "p", [Member(b"a"), Member(b"b")]),
        aad("s", "p", [Member(b"a\0b")]),
        aad("s/0/1", "p", [Member(b"x")]),
        aad("s/0/1x", "p", []),
        aad("s", "p", [Member(b"$key")]),
        aad("s", "p", [Key]),
        aad("s", "p", [Member(b"$headers"), Member(b"x")]),
        aad("s", "p", [Header(b"x")]),
        aad("s", "p", [Member(b"[]")]),
        aad("s", "p", [Element]),
        aad("s", "pp", []),
        aad("sp", "", []),
    ];
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn wrapped_keys_unwrap_only_under_their_kek_and_record_key() {
    let kek = Kek::new("kek", b"kek-secret-0123456789abcdef-0123");
    let value = kek.wrap("kek/00/11", &[9u8; 32], "2026-12-01T00:00:00Z", "fp");
    assert_eq!(kek.unwrap("kek/00/11", &value).unwrap(), [9u8; 32]);
    let moved = kek.unwrap("kek/00/12", &value).unwrap_err();
    assert!(matches!(moved, RecordError::Unwrap { .. }), "{moved}");
    // The subjects fingerprint is bound too: relabelled, it does not unwrap;
    // removed, the value is not custos's.
    let mut v: serde_json::Value = serde_json::from_slice(&value).unwrap();
    v["subjects"] = "other".into();
    let relabelled = kek
        .unwrap("kek/00/11", v.to_string().as_bytes())
        .unwrap_err();
    assert!(
        matches!(relabelled, RecordError::Unwrap { .. }),
        "{relabelled}"
    );
    v.as_object_mut().unwrap().remove("subjects");
    assert_eq!(
        kek.unwrap("kek/00/11", v.to_string().as_bytes()),
        Err(RecordError::BadValue)
    );
    let other = Kek::new("kek", b"another-secret-0123456789abcdef-");
    let e = other.unwrap("kek/00/11", &value).unwrap_err().to_string();
    assert!(
        e.contains(kek.fingerprint()) && e.contains(other.fingerprint()),
        "{e}"
    );
    assert_eq!(kek.unwrap("kek/00/11", b"{}"), Err(RecordError::BadValue));
    // The value never holds the data key in the clear.
    assert!(!String::from_utf8_lossy(&value).contains(&B64.encode([9u8; 32])));
}

#[test]
fn record_keys_round_trip_and_bad_ones_are_refused() {
    let rk = RecordKey {
        kek: "a/b".into(),
        subject: [1; 16],
        id: [2; 16],
    };
    assert_eq!(RecordKey::parse(rk.render().as_bytes()).unwrap(), rk);
    for bad in [
        &b"kek/zz/11"[..],
        b"kek/0101",
        b"/01010101010101010101010101010101/02020202020202020202020202020202",
        b"\xff",
        // Look-alikes of a real key: compaction goes by the exact bytes.
        b"kek/0101010101010101010101010101010A/02020202020202020202020202020202",
        b"kek/01010101010101010101010101010101/02020202020202020202020202020202 ",
    ] {
        assert_eq!(RecordKey::parse(bad), Err(RecordError::BadKey));
    }
}

#[test]
fn the_first_key_of_a_subject_wins_and_later_ones_are_losers() {
    let mut r = ring();
    let hash = r.subject_hash("kek", "c-1");
    assert!(r.get("kek", &hash).is_none());
    let (k1, v1) = r.candidate("kek", hash, "t");
    let (k2, v2) = r.candidate("kek", hash, "t");
    assert_ne!(
        k1, k2,
        "each candidate has its own record key (compaction keeps both)"
    );
    assert_eq!(r.apply(k1.as_bytes(), Some(&v1)).unwrap(), Applied::Won);
    assert_eq!(r.apply(k2.as_bytes(), Some(&v2)).unwrap(), Applied::Lost);
    let won = r.get("kek", &hash).unwrap();
    assert_eq!(hex::encode(won.id()), k1.rsplit('/').next().unwrap());
    // Reading the winner again (a restart) changes nothing.
    assert_eq!(r.apply(k1.as_bytes(), Some(&v1)).unwrap(), Applied::Won);
    // An erasure tombstones both records.
    let mut records = r.records_of("c-1");
    records.sort();
    let mut expected = vec![k1.clone(), k2.clone()];
    expected.sort();
    assert_eq!(records, expected);
    // Subjects hash apart per KEK and per subject.
    assert_ne!(hash, r.subject_hash("other", "c-1"));
    assert_ne!(hash, r.subject_hash("kek", "c-2"));
    // A tombstone under another KEK name with the same subject hash and id
    // is another record: it destroys nothing of this one.
    let renamed = k1.replacen("kek/", "other/", 1);
    r.apply(renamed.as_bytes(), None).unwrap();
    assert!(
        r.get("kek", &hash).is_some(),
        "{renamed} must not destroy {k1}"
    );
    r.apply(k1.as_bytes(), None).unwrap();
    assert!(
        r.get("kek", &hash).is_none(),
        "a tombstone destroys the key"
    );
    r.apply(k2.as_bytes(), None).unwrap();
    assert!(r.records_of("c-1").is_empty());
}

#[test]
fn records_of_other_keks_or_forged_ones_are_refused() {
    let mut r = ring();
    let stranger = KeyRing::new(
        vec![Kek::new("kek", b"not-the-same-secret-0123456789ab")],
        &audit(),
    );
    let hash = r.subject_hash("kek", "c-1");
    let (k, v) = stranger.candidate("kek", hash, "t");
    assert!(matches!(
        r.apply(k.as_bytes(), Some(&v)),
        Err(RecordError::Unwrap { .. })
    ));
    assert!(r.get("kek", &hash).is_none());
    let (k, v) = r.candidate("kek", hash, "t");
    let renamed = k.replacen("kek/", "gone/", 1);
    assert_eq!(
        r.apply(renamed.as_bytes(), Some(&v)),
        Err(RecordError::UnknownKek("gone".into()))
    );
    // A record whose key id does not match its key is not custos's.
    let mut parts: Vec<&str> = k.split('/').collect();
    let fake = "00".repeat(16);
    parts[2] = &fake;
    let forged = parts.join("/");
    let rewrapped = r
        .kek("kek")
        .unwrap()
        .wrap(&forged, &[3u8; 32], "t", r.subjects_fingerprint());
    assert_eq!(
        r.apply(forged.as_bytes(), Some(&rewrapped)),
        Err(RecordError::BadKey)
    );
}

#[test]
fn local_keys_make_one_key_per_subject_and_kek() {
    let keys = LocalKeys::new(ring(), "t".into());
    let a = keys.data_key("kek", "c-1").unwrap();
    let b = keys.data_key("kek", "c-1").unwrap();
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), keys.data_key("kek", "c-2").unwrap().id());
    assert_ne!(a.id(), keys.data_key("other", "c-1").unwrap().id());
    assert!(keys.data_key("missing", "c-1").is_err());
    assert_eq!(keys.take_created().len(), 3);
    assert!(keys.take_created().is_empty());
}

#[test]
fn decrypt_value_restores_values_spans_and_reports_destroyed_keys() {
    let keks = ring().keks().to_vec();
    let alive = LocalKeys::new(ring(), "t".into());
    let k1 = alive.data_key("kek", "c-1").unwrap();
    let k2 = alive.data_key("kek", "c-2").unwrap();
    let created = alive.take_created();
    let mut index = KeyIndex::default();
    for (k, v) in &created {
        index.apply(&keks, k.as_bytes(), v.as_deref()).unwrap();
    }
    let origin = Origin {
        source: "t/0/1",
        purpose: "support",
    };
    let at = |path: &[Seg<'_>]| aad(origin.source, origin.purpose, path.iter().copied());
    let m = |n: &'static [u8]| Seg::Member(n);
    let email = k1.seal(&at(&[m(b"customer"), m(b"email")]), br#""a@example.com""#);
    let n = k1.seal(&at(&[m(b"items"), Seg::Element, m(b"qty")]), b"12.50");
    let span = k1.seal(&at(&[m(b"notes")]), br#""b@example.org""#);
    let gone = k2.seal(&at(&[m(b"other")]), br#""x""#);
    let mut v = json!({
        "customer": {"email": email},
        "items": [{"qty": n}],
        "notes": format!("mail {span}, thanks"),
        "other": gone,
        "plain": "enc:v1:not base64 at all!",
    });
    // Destroy c-2's key: its value must not come back.
    let (k2_record, _) = created
        .iter()
        .find(|(k, _)| k.ends_with(&hex::encode(k2.id())))
        .unwrap();
    index.apply(&keks, k2_record.as_bytes(), None).unwrap();
    let mut counts = DecryptCounts::default();
    decrypt_value(&index, origin, &mut v, &mut counts);
    let expected: Value = serde_json::from_str(
        r#"{"customer":{"email":"a@example.com"},"items":[{"qty":12.50}],
            "notes":"mail b@example.org, thanks","other":"[key destroyed]",
            "plain":"enc:v1:not base64 at all!"}"#,
    )
    .unwrap();
    assert_eq!(v, expected);
    // Text that only mentions the prefix is not a token and no failure.
    assert_eq!(
        counts,
        DecryptCounts {
            decrypted: 3,
            destroyed: 1,
            missing: 0,
            failed: 0
        }
    );
    // The same value read as another event's does not decrypt.
    let token = k1.seal(&at(&[m(b"customer"), m(b"email")]), b"1");
    let mut moved = json!({ "customer": { "email": token } });
    let mut c = DecryptCounts::default();
    let other = Origin {
        source: "t/0/2",
        ..origin
    };
    decrypt_value(&index, other, &mut moved, &mut c);
    assert_eq!(c.failed, 1);
    assert!(moved["customer"]["email"]
        .as_str()
        .unwrap()
        .starts_with(TOKEN_PREFIX));
}

#[test]
fn the_key_index_goes_by_exact_record_keys() {
    let keks = vec![Kek::new("kek", b"kek-secret-0123456789abcdef-0123")];
    let keys = LocalKeys::new(KeyRing::new(keks.clone(), &audit()), "t".into());
    let k = keys.data_key("kek", "c-1").unwrap();
    let (record, value) = keys.take_created().pop().unwrap();
    let value = value.unwrap();
    let origin = Origin {
        source: "t/0/1",
        purpose: "support",
    };
    let token = k.seal(
        &aad(origin.source, origin.purpose, [Seg::Member(b"e")]),
        b"1",
    );
    let open = |index: &KeyIndex| {
        index.open(
            &aad(origin.source, origin.purpose, [Seg::Member(b"e")]),
            &token,
        )
    };
    let mut index = KeyIndex::default();
    index.apply(&keks, record.as_bytes(), Some(&value)).unwrap();
    assert_eq!(open(&index), Opened::Plain(b"1".to_vec()));
    // A tombstone of a look-alike record (another KEK name, same subject
    // hash and id) destroys nothing.
    let renamed = record.replacen("kek/", "gone/", 1);
    index.apply(&keks, renamed.as_bytes(), None).unwrap();
    assert_eq!(open(&index), Opened::Plain(b"1".to_vec()));
    assert_eq!(index.len(), 1);
    // The record's own tombstone does, and a value written again under the
    // record key after it does not bring the key back.
    index.apply(&keks, record.as_bytes(), None).unwrap();
    assert_eq!(open(&index), Opened::KeyDestroyed);
    index.apply(&keks, record.as_bytes(), Some(&value)).unwrap();
    assert_eq!(open(&index), Opened::KeyDestroyed);
    assert!(index.is_empty());
    // A record this reader cannot unwrap makes the token fail, not destroyed.
    let mut other = KeyIndex::default();
    let stranger = vec![Kek::new("kek", b"another-secret-0123456789abcdef-")];
    assert!(other
        .apply(&stranger, record.as_bytes(), Some(&value))
        .is_err());
    assert_eq!(open(&other), Opened::Failed(OpenError::Unreadable));
}

#[test]
fn erased_subjects_keys_read_later_are_marked_for_tombstoning() {
    // A candidate made while the erasure was on its way, or a rotation that
    // re-wrote a shredded key: read after the erasure, it must go too.
    let mut r = ring();
    let hash = r.subject_hash("kek", "c-1");
    let (k, v) = r.candidate("kek", hash, "t");
    r.forget("c-1");
    assert_eq!(r.apply(k.as_bytes(), Some(&v)), Ok(Applied::Erased));
    assert!(r.get("kek", &hash).is_none());
}

#[test]
fn keys_under_unknown_keks_or_another_audit_key_are_handled() {
    // A KEK the policy no longer names: its keys still hold their place and
    // an erasure still finds them.
    let old = KeyRing::new(
        vec![Kek::new("gone", b"gone-secret-0123456789abcdef-012")],
        &audit(),
    );
    let (k, v) = old.candidate("gone", old.subject_hash("gone", "c-1"), "t");
    let mut r = ring();
    assert!(matches!(
        r.apply(k.as_bytes(), Some(&v)),
        Err(RecordError::UnknownKek(_))
    ));
    assert_eq!(r.records_of("c-1"), vec![k.clone()]);
    // Subjects hashed under another audit key cannot be found: counted.
    let other = KeyRing::new(
        vec![Kek::new("kek", b"kek-secret-0123456789abcdef-0123")],
        &AuditKey::new(b"another-audit-key"),
    );
    let (k2, v2) = other.candidate("kek", other.subject_hash("kek", "c-2"), "t");
    assert!(matches!(
        r.apply(k2.as_bytes(), Some(&v2)),
        Err(RecordError::OtherSubjects(_))
    ));
    assert_eq!(r.foreign_subjects, 1);
}

#[test]
fn decrypt_tells_destroyed_missing_and_unreadable_keys_apart() {
    let keks = ring().keks().to_vec();
    let local = LocalKeys::new(ring(), "t".into());
    let (a, b, c) = (
        local.data_key("kek", "a").unwrap(),
        local.data_key("kek", "b").unwrap(),
        local.data_key("kek", "c").unwrap(),
    );
    let created = local.take_created();
    let record = |id: &KeyId| {
        created
            .iter()
            .find(|(k, _)| k.ends_with(&hex::encode(id)))
            .unwrap()
    };
    let mut index = KeyIndex::default();
    // a: tombstoned; b: never on the topic; c: on it under another secret.
    index
        .apply(&keks, record(a.id()).0.as_bytes(), None)
        .unwrap();
    let wrong = vec![Kek::new("kek", b"a-wrong-secret-0123456789abcdef-")];
    let (ck, cv) = record(c.id());
    assert!(index.apply(&wrong, ck.as_bytes(), cv.as_deref()).is_err());
    let o = Origin {
        source: "t/0/1",
        purpose: "p",
    };
    let at = aad(o.source, o.purpose, [Seg::Member(b"x")]);
    let mut v = json!({"x": a.seal(&at, b"1")});
    let mut counts = DecryptCounts::default();
    decrypt_value(&index, o, &mut v, &mut counts);
    assert_eq!(
        (v["x"].clone(), counts.destroyed),
        (json!(KEY_DESTROYED), 1)
    );
    let mut v = json!({"x": b.seal(&at, b"1")});
    decrypt_value(&index, o, &mut v, &mut counts);
    assert_eq!((v["x"].clone(), counts.missing), (json!(KEY_DESTROYED), 1));
    let mut v = json!({"x": c.seal(&at, b"1")});
    decrypt_value(&index, o, &mut v, &mut counts);
    assert_eq!(
        counts.failed, 1,
        "an unreadable key is a failure, not an erasure"
    );
    assert!(v["x"].as_str().unwrap().starts_with(TOKEN_PREFIX));
}

#[test]
fn a_token_inside_text_followed_by_base64_characters_is_found() {
    let keks = ring().keks().to_vec();
    let local = LocalKeys::new(ring(), "t".into());
    let k = local.data_key("kek", "a").unwrap();
    let mut index = KeyIndex::default();
    for (key, value) in local.take_created() {
        index
            .apply(&keks, key.as_bytes(), value.as_deref())
            .unwrap();
    }
    let o = Origin {
        source: "t/0/1",
        purpose: "p",
    };
    let at = aad(o.source, o.purpose, [Seg::Member(b"notes")]);
    for after in ["/abc", "+x", "=", "abcd", ""] {
        let token = k.seal(&at, br#""x@example.com""#);
        let mut v = json!({ "notes": format!("mail {token}{after} now") });
        let mut counts = DecryptCounts::default();
        decrypt_value(&index, o, &mut v, &mut counts);
        assert_eq!(
            v["notes"],
            json!(format!("mail x@example.com{after} now")),
            "{after}"
        );
        assert_eq!(counts.decrypted, 1);
        // At the very start of the text too.
        let mut v = json!({ "notes": format!("{token}{after}") });
        decrypt_value(&index, o, &mut v, &mut counts);
        assert_eq!(
            v["notes"],
            json!(format!("x@example.com{after}")),
            "{after}"
        );
    }
    // A prefix that starts no token does not hide the one right after it.
    let token = k.seal(&at, br#""y@example.com""#);
    let mut v = json!({ "notes": format!("enc:v1:{token} and enc:v1:") });
    let mut counts = DecryptCounts::default();
    decrypt_value(&index, o, &mut v, &mut counts);
    assert_eq!(v["notes"], json!("enc:v1:y@example.com and enc:v1:"));
    // Hostile text: a long run of the alphabet after a real key id costs a
    // bounded number of tries (this returns quickly) and decrypts nothing.
    let long = format!("{}{}", &token[..40], "A".repeat(1 << 20));
    let mut v = json!({ "notes": long.clone() });
    decrypt_value(&index, o, &mut v, &mut counts);
    assert_eq!(v["notes"], json!(long));
}
