use super::*;

fn ok(s: &str) -> Tape {
    let mut t = Tape::default();
    t.parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
    t
}

fn bad(s: &[u8]) -> JsonError {
    let mut t = Tape::default();
    t.parse(s).expect_err(&String::from_utf8_lossy(s))
}

#[test]
fn structure_and_members() {
    let src = r#" {"a": [1, {"b": null}], "c": "x\ny", "d": -1.5e3} "#;
    let t = ok(src);
    let m: Vec<String> = t
        .members(0)
        .map(|(k, _)| string(src.as_bytes(), &t.toks[k]).into_owned())
        .collect();
    assert_eq!(m, ["a", "c", "d"]);
    let (_, a) = t.members(0).next().unwrap();
    assert_eq!(t.elements(a).count(), 2);
    let (_, c) = t.members(0).nth(1).unwrap();
    assert_eq!(string(src.as_bytes(), &t.toks[c]), "x\ny");
    let (_, d) = t.members(0).nth(2).unwrap();
    assert_eq!(raw(src.as_bytes(), &t.toks[d]), b"-1.5e3");
    assert_eq!(raw_json(src.as_bytes(), &t.toks[0]), src.trim().as_bytes());
}

#[test]
fn escapes_decode() {
    let src = r#"["\u00e9\ud83d\ude00\/\\\""]"#;
    let t = ok(src);
    assert_eq!(string(src.as_bytes(), &t.toks[1]), "é😀/\\\"");
}

#[test]
fn rejects_what_rfc_8259_rejects() {
    for s in [
        &b""[..],
        b"{",
        b"[1,]",
        b"{\"a\":1,}",
        b"01",
        b"1.",
        b".5",
        b"+1",
        b"tru",
        b"nul",
        b"\"a",
        b"{\"a\" 1}",
        b"{a:1}",
        b"[1 2]",
        b"\"\\x\"",
        b"\"\\ud800\"",
        b"\"\\udc00\"",
        b"\"\x01\"",
        b"1 2",
        b"\xff",
        b"// c\n1",
        b"NaN",
    ] {
        bad(s);
    }
    assert!(matches!(
        bad(b"{\"a\":1,\"a\":2}"),
        JsonError::DuplicateKey(_)
    ));
    assert!(matches!(
        bad(b"{\"a\":1,\"\\u0061\":2}"),
        JsonError::DuplicateKey(_)
    ));
    assert_eq!(bad(&[b'['; 200]), JsonError::TooDeep);
    ok(&"["
        .repeat(MAX_DEPTH)
        .to_string()
        .chars()
        .chain("]".repeat(MAX_DEPTH).chars())
        .collect::<String>());
}

#[test]
fn agrees_with_serde_json_on_valid_documents() {
    for s in [
        r#"{"a":[1,2,{"b":[true,false,null]}],"c":{"d":"e"}}"#,
        "[]",
        "{}",
        "0",
        "-0.0e-0",
        r#""é""#,
    ] {
        let t = ok(s);
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        assert_eq!(t.toks[0].next as usize, t.toks.len(), "{s}");
        assert_eq!(v.is_object(), t.toks[0].kind == Kind::Object);
    }
}

proptest::proptest! {
    /// Strings are written exactly as `serde_json` writes them, escapes
    /// included, whichever way (copied whole or escaped) they take.
    #[test]
    fn strings_are_written_as_serde_json_writes_them(s in "(?s).{0,40}|[a-z\"\\\\\\x00-\\x1f\\x7f\u{2028}é]{0,12}") {
        let mut out = b"x".to_vec();
        write_str(&mut out, &s);
        let expected = serde_json::to_vec(&s).unwrap();
        proptest::prop_assert_eq!(&out[1..], expected.as_slice());
    }
}

#[test]
fn text_custos_wrote_parses_to_the_same_tape_without_the_key_check() {
    let text = br#"{"a":[1,{"b":"x\n"},[]],"c":null,"d":-1.5e3}"#;
    let mut written = Tape::default();
    written.parse_written(text).unwrap();
    assert_eq!(written.toks, ok(std::str::from_utf8(text).unwrap()).toks);
    assert!(written.spans(text));
    // Still a strict parser for structure; keys are not compared again.
    assert!(written.parse_written(br#"{"a":1,}"#).is_err());
    assert!(written.parse_written(br#"{"a":1,"a":2}"#).is_ok());
    assert!(matches!(
        bad(br#"{"a":1,"a":2}"#),
        JsonError::DuplicateKey(_)
    ));
}

#[test]
fn a_tape_built_alongside_its_text_spans_it_unless_given_up() {
    // `{"a":[1,"x\"y"],"b":{}}` written piece by piece.
    let mut text = Vec::new();
    let mut t = Tape::default();
    t.begin();
    t.open(Kind::Object, 0).unwrap();
    text.extend_from_slice(br#"{"a":"#);
    t.scalar(Kind::Str, 2, 3);
    t.open(Kind::Array, text.len()).unwrap();
    text.extend_from_slice(b"[1");
    t.written_scalar(&text, text.len() - 1);
    text.push(b',');
    let at = text.len();
    text.extend_from_slice(br#""x\"y""#);
    t.written_scalar(&text, at);
    text.push(b']');
    t.close(&text, text.len(), false).unwrap();
    text.extend_from_slice(br#","b":"#);
    t.scalar(Kind::Str, text.len() - 3, text.len() - 2);
    let inner = ok(r#"{"c":{}}"#);
    t.copy_subtree(&inner, 2, text.len());
    text.extend_from_slice(b"{}");
    text.push(b'}');
    t.close(&text, text.len(), false).unwrap();
    t.finish(&text);
    assert!(t.spans(&text), "{}", String::from_utf8_lossy(&text));
    assert_eq!(t.toks, ok(std::str::from_utf8(&text).unwrap()).toks);
    // Given up: never spans, and what follows is ignored without a panic.
    t.begin();
    t.open(Kind::Object, 0).unwrap();
    t.written_scalar(b"{[", 1);
    t.discard_open();
    t.discard_open();
    assert!(t.close(b"{}", 2, false).is_ok());
    t.finish(b"{}");
    assert!(!t.spans(b"{}"));
}
