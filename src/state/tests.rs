use super::*;

const P: [&str; 3] = ["marketing", "analytics", "support"];
const M: usize = 0;
const A: usize = 1;
const S: usize = 2;

#[test]
fn consent_lifecycle() {
    let mut s = MemoryState::new(&P);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-1","purposes":{"marketing":true,"analytics":false}}"#),
    )
    .unwrap();
    assert_eq!(s.consent("c-1", M), Some(true));
    assert_eq!(s.consent("c-1", A), Some(false));
    assert_eq!(s.consent("c-1", S), None);
    // A later record replaces the earlier one whole.
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-1","purposes":{"analytics":true}}"#),
    )
    .unwrap();
    assert_eq!(s.consent("c-1", M), None);
    // Tombstone: back to defaults.
    s.apply_consent(Some("c-1"), None).unwrap();
    assert_eq!(s.consent("c-1", A), None);
    assert_eq!(s.consent_subjects(), 0);
}

#[test]
fn numeric_subjects_and_errors() {
    let mut s = MemoryState::new(&P);
    s.apply_consent(
        None,
        Some(br#"{"subject":42,"purposes":{"marketing":true}}"#),
    )
    .unwrap();
    assert_eq!(s.consent("42", M), Some(true));
    assert!(s.apply_consent(None, Some(b"{")).is_err());
    assert_eq!(
        s.apply_consent(None, Some(br#"{"purposes":{}}"#)),
        Err(RecordError::NoSubject)
    );
    assert_eq!(
        s.apply_consent(
            None,
            Some(br#"{"subject":"x","purposes":{"marketing":"yes"}}"#)
        ),
        Err(RecordError::BadPurposes)
    );
    // The malformed record of "x" withdrew its consent.
    assert_eq!(s.consent("x", M), Some(false));
}

#[test]
fn unknown_purposes_and_the_star_grant_nothing() {
    let mut s = MemoryState::new(&P);
    let a = s
        .apply_consent(
            None,
            Some(br#"{"subject":"c-9","purposes":{"*":true,"Marketing":true,"support":true}}"#),
        )
        .unwrap();
    assert_eq!(a.unknown_purposes, 2);
    assert_eq!(s.consent("c-9", M), None);
    assert_eq!(s.consent("c-9", A), None);
    assert_eq!(s.consent("c-9", S), Some(true));
}

#[test]
fn duplicate_keys_read_as_withdrawal() {
    let mut s = MemoryState::new(&P);
    for rec in [
        &br#"{"subject":"d-1","purposes":{"marketing":false,"marketing":true}}"#[..],
        br#"{"subject":"d-1","purposes":{"marketing":true},"purposes":{"marketing":true}}"#,
    ] {
        let a = s.apply_consent(None, Some(rec)).unwrap();
        assert!(a.duplicate_keys);
        assert_eq!(s.consent("d-1", M), Some(false));
        assert_eq!(s.consent("d-1", S), Some(false));
    }
    // Two subjects in one body: both lose every consent.
    s.apply_consent(
        None,
        Some(br#"{"subject":"e-1","subject":"e-2","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    assert_eq!(s.consent("e-1", M), Some(false));
    assert_eq!(s.consent("e-2", M), Some(false));
}

#[test]
fn key_and_body_mismatch_withdraws_both_and_erases_the_key() {
    let mut s = MemoryState::new(&P);
    s.apply_consent(
        Some("s-b"),
        Some(br#"{"subject":"s-b","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    let a = s
        .apply_consent(
            Some("x"),
            Some(br#"{"subject":"s-b","purposes":{"marketing":true}}"#),
        )
        .unwrap();
    assert!(a.mismatch);
    assert_eq!(s.consent("s-b", M), Some(false));
    assert_eq!(s.consent("x", M), Some(false));

    let a = s
        .apply_erasure(Some("k-1"), Some(br#"{"subject":"victim"}"#))
        .unwrap();
    assert!(a.mismatch);
    assert_eq!(a.newly_erased, vec!["k-1".to_string()]);
    assert!(s.is_erased("k-1"));
    assert!(!s.is_erased("victim"));
    assert_eq!(s.consent("victim", M), Some(false));
}

#[test]
fn canonical_subject_forms() {
    for (raw, want) in [
        ("42", "42"),
        ("42.0", "42"),
        ("4.2e1", "42"),
        ("4.2E+1", "42"),
        ("420e-1", "42"),
        ("-0", "0"),
        ("0.0", "0"),
        ("-1.50", "-1.5"),
        ("15e-1", "1.5"),
        ("0.05", "0.05"),
        ("5e-2", "0.05"),
        ("12345678901234567890123", "12345678901234567890123"),
        ("1e3", "1000"),
    ] {
        assert_eq!(canonical_number(raw).as_deref(), Some(want), "{raw}");
    }
    assert_eq!(canonical_number("1e400"), None);
    assert_eq!(canonical_number("1e-400"), None);
    assert_eq!(canonical_number("abc"), None);
    assert_eq!(canonical_subject_str("  c-4\t").as_deref(), Some("c-4"));
    assert_eq!(canonical_subject_str("   "), None);
    // "é" written decomposed and precomposed is one subject.
    assert_eq!(
        canonical_subject_str("Jose\u{301}"),
        canonical_subject_str("Jos\u{e9}")
    );
    // Unicode dashes and other scripts' digits do not make another
    // subject either (red-team round 3: `c‐4` escaped the erasure of `c-4`).
    for form in [
        "c\u{2010}4",
        "c\u{2013}4",
        "c\u{2212}4",
        "c-\u{664}",
        "c\u{fe63}\u{966}4",
    ] {
        let want = if form.contains('\u{966}') {
            "c-04"
        } else {
            "c-4"
        };
        assert_eq!(
            canonical_subject_str(form).as_deref(),
            Some(want),
            "{form:?}"
        );
    }
    // Invisible characters and full-width forms do not make another subject.
    for form in [
        "c-4\u{200b}",
        "\u{feff}c-4",
        "c-4\u{ad}",
        "c-4\u{34f}",
        "c-4\u{180e}",
        "c-4\u{0}",
        "\u{ff43}-\u{ff14}",
    ] {
        assert_eq!(
            canonical_subject_str(form).as_deref(),
            Some("c-4"),
            "{form:?}"
        );
    }
    assert_eq!(canonical_subject_str("\u{200b}\u{feff}"), None);
    assert_eq!(
        canonical_subject(&serde_json::json!(["c-4"])),
        Err(Unusable)
    );
    assert_eq!(canonical_subject(&serde_json::json!(true)), Err(Unusable));
    assert_eq!(canonical_subject(&Value::Null), Ok(None));
}

#[test]
fn one_subject_whatever_its_form() {
    let mut s = MemoryState::new(&P);
    s.apply_erasure(None, Some(br#"{"subject":42}"#)).unwrap();
    for form in ["42", " 42 "] {
        assert!(s.is_erased(&canonical_subject_str(form).unwrap()));
    }
    for raw in ["42.0", "4.2e1"] {
        assert!(s.is_erased(&canonical_number(raw).unwrap()));
    }
    s.apply_erasure(Some(" c-7 "), Some(br#"{"subject":"c-7"}"#))
        .unwrap();
    assert!(s.is_erased("c-7"));
}

#[test]
fn deny_all_withdraws_and_objects_everywhere() {
    let mut s = MemoryState::new(&P);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-3","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    s.deny_all("c-3");
    assert_eq!(s.consent("c-3", M), Some(false));
    assert_eq!(s.consent("c-3", S), Some(false));
    assert!(s.erase("c-3"));
    assert!(s.is_erased("c-3"));
}

#[test]
fn erasure_is_permanent() {
    let mut s = MemoryState::new(&P);
    s.apply_consent(
        None,
        Some(br#"{"subject":"c-2","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    assert_eq!(
        s.apply_erasure(
            None,
            Some(br#"{"subject":"c-2","requested_at":"2026-11-01T00:00:00Z"}"#)
        )
        .unwrap()
        .newly_erased,
        vec!["c-2".to_string()]
    );
    assert!(s.is_erased("c-2"));
    assert_eq!(s.consent("c-2", M), None);
    s.apply_erasure(Some("c-2"), None).unwrap();
    assert!(s.is_erased("c-2"));
    // A malformed erasure record erases its key.
    assert!(s.apply_erasure(Some("c-5"), Some(b"not json")).is_err());
    assert!(s.is_erased("c-5"));
}

#[test]
fn the_state_holds_hashes_not_ids_and_a_consent_tombstone_never_unerases() {
    let mut s = MemoryState::new(&["analytics", "marketing"]);
    s.apply_consent(
        None,
        Some(br#"{"subject":"ada@example.com","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    s.apply_erasure(None, Some(br#"{"subject":"c-erased"}"#))
        .unwrap();
    let dump = format!("{s:?}");
    assert!(
        !dump.contains("ada@example.com") && !dump.contains("c-erased"),
        "{dump}"
    );
    assert_eq!((s.consent_subjects(), s.erased_subjects()), (1, 1));
    // Consent records for an erased subject, and their tombstones, leave it erased.
    s.apply_consent(
        Some("c-erased"),
        Some(br#"{"subject":"c-erased","purposes":{"marketing":true}}"#),
    )
    .unwrap();
    s.apply_consent(Some("c-erased"), None).unwrap();
    assert!(s.is_erased("c-erased"));
    assert_eq!(s.consent("c-erased", 1), None);
    assert_eq!((s.consent_subjects(), s.erased_subjects()), (1, 1));
    // Erasing twice counts once.
    s.apply_erasure(None, Some(br#"{"subject":"c-erased"}"#))
        .unwrap();
    assert_eq!(s.erased_subjects(), 1);
    // Two states hash differently (a key per process): no id is guessable from a dump.
    let t = MemoryState::new(&["analytics", "marketing"]);
    assert_ne!(format!("{:?}", t.key), format!("{:?}", s.key));
}
