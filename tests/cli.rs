//! The `custos` binary end to end: policy check, explain, apply, report.
//! Golden files live in tests/golden; regenerate with `UPDATE_GOLDEN=1 cargo test`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shop(file: &str) -> String {
    root()
        .join("examples/shop")
        .join(file)
        .display()
        .to_string()
}

fn custos(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.args(args)
        .env("CUSTOS_KEY_ANALYTICS", "analytics-secret")
        .env("CUSTOS_KEY_MARKETING", "marketing-secret")
        .env("CUSTOS_AUDIT_KEY", AUDIT_KEY)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("custos runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Compares `actual` with a golden file (or rewrites it with UPDATE_GOLDEN=1).
fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(
        actual,
        expected,
        "output differs from {}; rerun with UPDATE_GOLDEN=1 if intended",
        path.display()
    );
}

fn lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

const NOW: &str = "2026-11-23T00:00:00Z";
const AUDIT_KEY: &str = "audit-secret";

fn apply_shop(extra: &[&str]) -> Output {
    let policy = shop("policy.yaml");
    let input = shop("orders.ndjson");
    let consent = shop("consent.ndjson");
    let erasure = shop("erasure.ndjson");
    let mut args = vec![
        "apply",
        &policy,
        "--stream",
        "orders",
        "--input",
        &input,
        "--consent",
        &consent,
        "--erasure",
        &erasure,
        "--now",
        NOW,
    ];
    args.extend_from_slice(extra);
    custos(&args, None)
}

#[test]
fn policy_check_valid_and_invalid() {
    let ok = custos(&["policy", "check", "examples/shop/policy.yaml"], None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("is valid"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(shop("policy.yaml"))
        .unwrap()
        .replace("retention: 30d", "retention: 30x")
        .replace("customer.name: pii.name", "customer.name: pii.nmae");
    std::fs::write(&bad, text).unwrap();
    let out = custos(&["policy", "check", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let located: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(bad.to_str().unwrap()))
        .collect();
    assert!(
        located
            .iter()
            .any(|l| l.contains(":19:16: bad duration unit")),
        "{err}"
    );
    assert!(
        located
            .iter()
            .any(|l| l.contains(":67:22: unknown class `pii.nmae`")),
        "{err}"
    );
    assert!(err.contains("2 errors found"), "{err}");
}

/// A subject path that no field classifies is most likely a typo: `policy
/// check` says so (red-team round 3: a mistyped path made every event
/// subject-less, out of reach of erasure).
#[test]
fn policy_check_warns_on_unclassified_subject_path() {
    let ok = custos(&["policy", "check", "examples/shop/policy.yaml"], None);
    assert!(!stderr(&ok).contains("subject path"), "{}", stderr(&ok));
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    let text = std::fs::read_to_string(shop("policy.yaml"))
        .unwrap()
        .replacen("subject: customer.id", "subject: customer.idd", 1);
    std::fs::write(&typo, text).unwrap();
    let out = custos(&["policy", "check", typo.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the subject path `customer.idd` is not in `fields`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_check_missing_file() {
    let out = custos(&["policy", "check", "nope.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read policy file nope.yaml"));
}

#[test]
fn apply_shop_example_golden() {
    let out = apply_shop(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    golden("apply-shop.ndjson", &stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 5 (shop.orders/0/4) dead-lettered: decode"),
        "{err}"
    );
    assert!(
        err.contains("line 6 (shop.orders/0/5) dead-lettered: decode"),
        "{err}"
    );
    assert!(
        err.contains("7 records: 5 governed, 2 dead-lettered"),
        "{err}"
    );
    // No personal data on stderr.
    assert!(
        !err.contains("example.com") && !err.contains("o-broken"),
        "{err}"
    );
}

#[test]
fn apply_semantics_on_shop_example() {
    let out = apply_shop(&[]);
    let ls = lines(&out);
    let get = |purpose: &str, order: &str| {
        ls.iter()
            .find(|l| {
                l["purpose"] == purpose && l["value"]["order_id"] == order
                    || (l["purpose"] == purpose
                        && purpose == "marketing"
                        && l["headers"]["custos-source"]
                            .as_str()
                            .unwrap()
                            .ends_with(order))
            })
            .cloned()
    };
    // Erased subject c-4 reaches no purpose.
    assert!(ls
        .iter()
        .all(|l| l["headers"]["custos-source"] != "shop.orders/0/6"));
    // c-2 objected to analytics and withdrew marketing consent; support (contract) still gets it.
    assert!(get("analytics", "o-1002").is_none());
    assert!(get("support", "o-1002").is_some());
    // The June order is past analytics' 30d and marketing's 90d, not support's 365d.
    assert!(get("analytics", "o-0999").is_none());
    assert!(get("support", "o-0999").is_some());
    // Card masked for support, dropped elsewhere; health notes dropped everywhere.
    let s = get("support", "o-1001").unwrap();
    assert_eq!(s["value"]["payment"]["card_number"], "***************1111");
    for l in &ls {
        let text = l["value"].to_string();
        assert!(!text.contains("penicillin"), "{text}");
        assert!(
            !text.contains("WELCOME10"),
            "unclassified field leaked: {text}"
        );
        if l["purpose"] != "support" {
            assert!(
                !text.contains("4111 1111") && !text.contains("5555-5555"),
                "{text}"
            );
        }
    }
    // Purposes in policy order within each input record.
    let order: Vec<&str> = ls
        .iter()
        .filter(|l| l["headers"]["custos-source"] == "shop.orders/0/0")
        .map(|l| l["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["analytics", "marketing", "support"]);
}

#[test]
fn apply_purpose_filter_and_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl.ndjson");
    let out = apply_shop(&[
        "--purpose",
        "marketing",
        "--dead-letter",
        dl.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = lines(&out);
    assert_eq!(ls.len(), 2);
    assert!(ls
        .iter()
        .all(|l| l["purpose"] == "marketing" && l["topic"] == "shop.orders.marketing"));
    let dls: Vec<Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dls.len(), 2);
    assert_eq!(dls[0]["headers"]["custos-error"], "decode");
    assert_eq!(dls[0]["headers"]["custos-source"], "shop.orders/0/4");
    assert_eq!(
        dls[0]["value"],
        r#"{"order_id": "o-broken", "created_at": "#
    );
    assert_eq!(dls[1]["value"], "[1,2,3]");
}

#[test]
fn apply_envelopes_from_stdin() {
    let input = br#"{"key":"c-1","value":{"order_id":"o-9","created_at":"2026-11-22T00:00:00Z","customer":{"id":"c-1"}},"headers":{"x-trace":"abc"},"timestamp":1795000000000}
{"key":"c-1","value":"{\"order_id\":\"o-10\"}","timestamp":"2026-11-22T00:00:00Z"}
{"value":null}
not json
"#;
    let policy = shop("policy.yaml");
    let out = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--envelope",
            "--now",
            NOW,
            "--purpose",
            "analytics",
        ],
        Some(input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = lines(&out);
    assert_eq!(ls.len(), 2, "{ls:?}");
    let ps = custos::transform::pseudonym_with_key(b"analytics-secret", b"c-1");
    assert_eq!(ls[0]["key"], ps.as_str());
    assert_eq!(ls[0]["value"]["customer"]["id"], ps.as_str());
    assert!(ls[0]["headers"].get("x-trace").is_none());
    assert_eq!(ls[1]["value"]["order_id"], "o-10");
    let err = stderr(&out);
    assert!(err.contains("line 3") && err.contains("line 4"), "{err}");
}

#[test]
fn apply_refuses_to_start_without_secrets() {
    let policy = shop("policy.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "apply",
            &policy,
            "--stream",
            "orders",
            "--input",
            &shop("orders.ndjson"),
        ])
        .env_remove("CUSTOS_KEY_ANALYTICS")
        .env("CUSTOS_KEY_MARKETING", "m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("CUSTOS_KEY_ANALYTICS"), "{err}");
}

#[test]
fn apply_unknown_stream_or_purpose() {
    let policy = shop("policy.yaml");
    let out = custos(&["apply", &policy, "--stream", "nope"], Some(b""));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown stream `nope`; the policy has: orders"));
    let out = custos(
        &["apply", &policy, "--stream", "orders", "--purpose", "sales"],
        Some(b""),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("purpose `sales` has no output"));
}

#[test]
fn apply_survives_hostile_input() {
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"{\"order_id\": \"o-1\", \"customer\": {\"id\": \"c-1\"\n"); // malformed
    input.extend_from_slice(b"42\n"); // not an object
    input.extend_from_slice(b"{\"order_id\": \"\xff\xfe\"}\n"); // invalid UTF-8
    input.extend_from_slice(
        format!(
            "{{\"items\": {}{}}}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .as_bytes(),
    ); // deep
    let big = "lorem ipsum 4111 1111 1111 1111 dolor ".repeat(15_000); // ~570 KB scanned
    input.extend_from_slice(format!("{{\"order_id\":\"o-big\",\"created_at\":\"2026-11-22T00:00:00Z\",\"notes\":\"{big}\"}}\n").as_bytes());
    input.extend_from_slice(b"{\"order_id\":\"o-num\",\"created_at\":\"2026-11-22T00:00:00Z\",\"payment\":{\"amount\":1e999999}}\n");
    input.extend_from_slice(b"{\"order_id\":\"o-dup\",\"order_id\":\"o-dup2\",\"created_at\":\"2026-11-22T00:00:00Z\"}\n");
    input.extend_from_slice(b"{\"order_id\":\"o-last\",\"created_at\":\"2026-11-22T00:00:00Z\"}\n");
    let policy = shop("policy.yaml");
    let out = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--purpose",
            "analytics",
            "--now",
            NOW,
        ],
        Some(&input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("8 records: 3 governed, 5 dead-lettered"),
        "{err}"
    );
    assert!(err.contains("duplicate object key"), "{err}");
    assert!(
        !err.contains("4111") && !err.contains("lorem"),
        "stderr must not echo content"
    );
    let ls = lines(&out);
    let ids: Vec<&str> = ls
        .iter()
        .map(|l| l["value"]["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["o-big", "o-num", "o-last"]);
    assert!(
        !ls[1]["value"].to_string().contains("1e999999"),
        "amount is not an analytics field"
    );
    let notes = ls[0]["value"]["notes"].as_str().unwrap();
    assert!(!notes.contains("4111"));
    assert_eq!(
        notes.matches("[REDACTED:pii.financial.card]").count(),
        15_000
    );
}

#[test]
fn explain_golden_and_json() {
    let out = custos(&["explain", "examples/shop/policy.yaml"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    golden("explain-shop.txt", &stdout(&out));
    let out = custos(
        &["explain", "examples/shop/policy.yaml", "--format", "json"],
        None,
    );
    assert!(out.status.success());
    golden("explain-shop.json", &stdout(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let fields = v["streams"][0]["fields"].as_array().unwrap();
    let email = fields
        .iter()
        .find(|f| f["path"] == "customer.email")
        .unwrap();
    let by: Vec<(&str, &str)> = email["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["purpose"].as_str().unwrap(),
                p["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("analytics", "drop"),
            ("marketing", "keep"),
            ("support", "keep")
        ]
    );
    let analytics = &email["purposes"][0];
    assert_eq!(analytics["decided_by"], "default (no rule: drop)");
    let card = fields
        .iter()
        .find(|f| f["path"] == "payment.card_number")
        .unwrap();
    assert_eq!(card["purposes"][2]["action"], "mask");
    assert_eq!(
        card["purposes"][2]["classes"][0]["rule"]["class"],
        "pii.financial.card"
    );
}

#[test]
fn explain_filters() {
    let out = custos(
        &[
            "explain",
            "examples/shop/policy.yaml",
            "--stream",
            "orders",
            "--purpose",
            "marketing",
        ],
        None,
    );
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("marketing") && !text.contains("analytics  "),
        "{text}"
    );
    let out = custos(
        &["explain", "examples/shop/policy.yaml", "--purpose", "nope"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn report_golden() {
    let out = custos(&["report", "examples/shop/policy.yaml"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    golden("report-shop.md", &stdout(&out));
    let out = custos(
        &["report", "examples/shop/policy.yaml", "--format", "html"],
        None,
    );
    assert!(out.status.success());
    golden("report-shop.html", &stdout(&out));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["policy", "check", "--help"],
        &["explain", "--help"],
        &["apply", "--help"],
        &["report", "--help"],
        &["run", "--help"],
        &["demo", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "trace", "--help"],
        &["policy", "diff", "--help"],
        &["policy", "test", "--help"],
        &["decrypt", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let out = custos(args, None);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// One topic for two jobs (a dead-letter topic that is an input would feed
/// raw records back in) stops the worker before it connects.
#[test]
fn run_refuses_a_topic_with_two_roles() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(shop("policy.yaml")).unwrap();
    write(dir.path(), "policy.yaml", &policy);
    for (section, topic, fragment) in [
        (
            "dead_letter",
            "shop.orders",
            "is both the input of stream `orders` and `dead_letter.topic`",
        ),
        (
            "audit",
            "shop.orders.analytics",
            "is both the `analytics` output of stream `orders` and `audit.topic`",
        ),
        ("lineage", "custos.dead-letter", "`lineage.topic`"),
    ] {
        let text = format!(
            "policy = \"policy.yaml\"\n[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[{section}]\ntopic = \"{topic}\"\n"
        );
        let cfg = write(dir.path(), "custos.toml", &text);
        let out = Command::new(env!("CARGO_BIN_EXE_custos"))
            .args(["run", "--config", &cfg])
            .env("CUSTOS_KEY_ANALYTICS", "analytics-secret-key-0001")
            .env("CUSTOS_KEY_MARKETING", "marketing-secret-key-0001")
            .env("CUSTOS_AUDIT_KEY", "audit-key-0123456789abcdef")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        assert!(err.contains(fragment), "expected {fragment:?} in {err}");
    }
}

#[test]
fn run_refuses_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(shop("policy.yaml")).unwrap();
    write(dir.path(), "policy.yaml", &policy);
    let cases = [
        ("policy = \"policy.yaml\"\n[kafka]\nbootstrap_server = \"x:1\"\n", "bootstrap_server"),
        ("policy = \"policy.yaml\"\n[delivery]\nguarantee = \"twice\"\n", "delivery.guarantee"),
        ("policy = \"policy.yaml\"\n[kafka.properties]\n\"enable.auto.offset.store\" = \"true\"\n", "enable.auto.offset.store"),
        ("policy = \"missing.yaml\"\n", "cannot read policy file"),
        ("[kafka]\n", "policy"),
    ];
    for (text, fragment) in cases {
        let cfg = write(dir.path(), "custos.toml", text);
        let out = custos(&["run", "--config", &cfg], None);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        assert!(err.contains(fragment), "expected {fragment:?} in {err}");
    }
    // An environment override is checked the same way.
    let cfg = write(dir.path(), "custos.toml", "policy = \"policy.yaml\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["run", "--config", &cfg])
        .env("CUSTOS_KAFKA__NOPE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    // Missing secrets stop it before anything is consumed.
    let cfg = write(
        dir.path(),
        "custos.toml",
        "policy = \"policy.yaml\"\n[kafka]\nbootstrap_servers = \"embedded\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["run", "--config", &cfg])
        .env_remove("CUSTOS_KEY_ANALYTICS")
        .env_remove("CUSTOS_KEY_MARKETING")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("CUSTOS_KEY_ANALYTICS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_runs_the_whole_flow() {
    let out = custos(&["demo"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PURPOSE analytics"), "{text}");
    assert!(
        text.contains(
            "analytics  emitted 3  suppressed: consent 0 objection 1 erasure 1 expired 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "marketing  emitted 2  suppressed: consent 2 objection 0 erasure 1 expired 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "support    emitted 5  suppressed: consent 0 objection 0 erasure 1 expired 0"
        ),
        "{text}"
    );
    assert!(
        text.contains("DEAD LETTERS custos.dead-letter: 3 records"),
        "{text}"
    );
    // The Avro stream: governed into derived schemas registered in the
    // stand-in; the JSON record on the Avro topic is a `schema` dead letter.
    assert!(
        text.lines()
            .any(|l| l.contains("shop.orders.avro/") && l.ends_with("(schema)")),
        "{text}"
    );
    let avro = text
        .split("PURPOSE analytics → shop.orders.avro.analytics")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .unwrap_or_default();
    assert!(
        avro.contains("1 records") && avro.contains("\"birth_date\":\"1985\""),
        "{avro}"
    );
    assert!(
        !avro.contains("ada@example.com") && !avro.contains("4111"),
        "{avro}"
    );
    // The erased subject's data is nowhere in the outputs.
    assert!(
        !text.contains("linus@example.com") && !text.contains("key=c-4"),
        "{text}"
    );
    assert!(!text.contains("penicillin"));
}

#[test]
fn apply_writes_an_audit_trail_that_verifies_and_traces() {
    use hmac::{Hmac, Mac};
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.ndjson").display().to_string();
    let out = apply_shop(&["--audit", &trail]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&trail).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 7, "one audit record per input line");

    // No raw personal data: no subject id, e-mail, name or card number.
    for needle in ["\"c-1\"", "ada@example.com", "Ada Lovelace", "4111"] {
        assert!(!text.contains(needle), "audit trail leaks {needle}");
    }
    let subject = |id: &str| {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(AUDIT_KEY.as_bytes()).unwrap();
        m.update(id.as_bytes());
        hex::encode(m.finalize().into_bytes())
    };
    let first = &records[0];
    assert_eq!(first["type"], "record");
    assert_eq!(first["stream"], "orders");
    assert_eq!(first["source"]["offset"], 0);
    assert_eq!(first["subject"], Value::String(subject("c-1")));
    assert_eq!(first["prev"], "");
    let analytics = &first["outcomes"][0];
    assert_eq!(analytics["status"], "emitted");
    assert!(analytics["dropped"]
        .as_array()
        .unwrap()
        .contains(&Value::from("customer.email")));
    assert_eq!(analytics["transformed"]["customer.id"], "pseudonymize");
    assert!(first["detections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["field"] == "notes" && d["class"] == "pii.contact.phone"));
    // The chain: each record's prev is the hash before it.
    for w in records.windows(2) {
        assert_eq!(w[1]["prev"], w[0]["hash"]);
    }
    // Dead letters and suppressions say why.
    assert_eq!(
        records
            .iter()
            .filter(|r| r["type"] == "dead_letter" && r["reason"] == "decode")
            .count(),
        2
    );
    let erased = records
        .iter()
        .find(|r| r["subject"] == Value::String(subject("c-4")))
        .unwrap();
    assert!(erased["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "suppressed" && o["reason"] == "erasure"));

    let cfg = write(dir.path(), "custos.toml", "policy = \"unused.yaml\"\n");
    let verify = |file: &str| {
        custos(
            &["audit", "verify", "--config", &cfg, "--input", file],
            None,
        )
    };
    let ok = verify(&trail);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("shop.orders/0: 7 records checked, 0 replays, 0 restarts, 0 breaks"),
        "{}",
        stdout(&ok)
    );

    // An altered record, a removed record: breaks, exit 1, positions named.
    let rows: Vec<&str> = text.lines().collect();
    let altered = write(
        dir.path(),
        "altered.ndjson",
        &rows.iter().enumerate().map(|(i, l)| if i == 2 { l.replace("emitted", "suppressed") } else { l.to_string() } + "\n").collect::<String>(),
    );
    let bad = verify(&altered);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("altered.ndjson:3"),
        "{}",
        stdout(&bad)
    );
    let removed = write(
        dir.path(),
        "removed.ndjson",
        &rows
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>(),
    );
    let bad = verify(&removed);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("missing"), "{}", stdout(&bad));
    // Another key: nothing verifies.
    let other = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["audit", "verify", "--config", &cfg, "--input", &trail])
        .env("CUSTOS_AUDIT_KEY", "not-the-key")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));

    // Trace: c-1 has two orders (one expired for every purpose but support).
    let traced = custos(
        &[
            "audit",
            "trace",
            "--config",
            &cfg,
            "--subject",
            "c-1",
            "--input",
            &trail,
        ],
        None,
    );
    assert!(traced.status.success(), "{}", stderr(&traced));
    let found = lines(&traced);
    assert_eq!(found.len(), 2);
    assert!(found
        .iter()
        .all(|r| r["subject"] == Value::String(subject("c-1"))));
    assert!(found[1]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["reason"] == "expired"));
}

#[test]
fn apply_dead_letter_file_is_private_and_envelopes_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dead.ndjson");
    // The file exists already with a loose mode: apply must tighten it.
    std::fs::write(&dl, b"old").unwrap();
    let input = concat!(
        "\u{feff}{\"value\":{\"order_id\":\"o-1\",\"created_at\":\"2026-11-22T00:00:00Z\"}}\n",
        "{\"value\":{\"order_id\":\"o-2\",\"order_id\":\"o-3\",\"created_at\":\"2026-11-22T00:00:00Z\"}}\n",
        "{\"value\":{\"order_id\":\"o-4\",\"created_at\":\"2026-11-22T00:00:00Z\"},\"headers\":{\"custos-error\":\"forged\",\"custos-source\":\"x/0/0\"}}\n",
        "{\"key\":\"o-5\",\"value\":null,\"headers\":{\"trace\":null,\"custos-source\":\"x/0/0\"}}\n",
        "{\"key\":\"o-6\"}\n",
    );
    let policy = shop("policy.yaml");
    let out = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--purpose",
            "analytics",
            "--envelope",
            "--now",
            NOW,
            "--dead-letter",
            dl.to_str().unwrap(),
        ],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["value"]["order_id"].as_str().unwrap().to_string())
        .collect();
    // The BOM line is read; the duplicate-key value is dead-lettered.
    assert_eq!(ids, ["o-1", "o-4"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dl).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "dead letters hold raw personal data");
    }
    let text = std::fs::read_to_string(&dl).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    // An envelope without a value is not a tombstone: a decode error.
    assert!(
        text.lines().nth(2).unwrap().contains("no `value` member"),
        "{text}"
    );
    assert!(text.contains("duplicate object key"), "{text}");
    // A tombstone is dead-lettered as the worker does it: null stays null,
    // the input's custos-* headers are not copied.
    let tomb: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(tomb["detail"], "tombstone (null value) on an input topic");
    assert_eq!(tomb["key"], "o-5");
    assert!(tomb["value"].is_null());
    assert_eq!(
        tomb["headers"],
        serde_json::json!({"trace": null, "custos-error": "decode", "custos-source": "shop.orders/0/3"})
    );
    // Output headers never carry the input's custos-* headers.
    assert!(!stdout(&out).contains("forged"));
}

#[test]
fn apply_skips_a_line_over_the_size_limit_without_holding_it() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"order_id\":\"");
    input.extend(std::iter::repeat_n(b'x', 17 * 1024 * 1024));
    input.extend_from_slice(b"\"}\n");
    input
        .extend_from_slice(b"{\"order_id\":\"o-after\",\"created_at\":\"2026-11-22T00:00:00Z\"}\n");
    let policy = shop("policy.yaml");
    let out = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--purpose",
            "analytics",
            "--now",
            NOW,
        ],
        Some(&input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("too_large"), "{}", stderr(&out));
    let ls = lines(&out);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["value"]["order_id"], "o-after");
}

#[test]
fn short_keys_are_warned_about_offline() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    let out = cmd
        .args(["policy", "check", &shop("policy.yaml")])
        .env("CUSTOS_KEY_ANALYTICS", "a")
        .env("CUSTOS_KEY_MARKETING", "marketing-secret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key `analytics` has 1 byte") && err.contains("16 bytes"),
        "{err}"
    );
}

#[test]
fn run_refuses_to_start_when_its_http_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("custos.toml");
    std::fs::write(
        &cfg,
        format!(
            "policy = \"{}\"\n[kafka]\nbootstrap_servers = \"embedded\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            shop("policy.yaml")
        ),
    )
    .unwrap();
    let out = custos(&["run", "--config", cfg.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

const PR_POLICY: &str = "tests/diff/shop-pr.yaml";

#[test]
fn policy_diff_golden_in_every_format() {
    for (format, file) in [
        ("table", "diff-shop.txt"),
        ("json", "diff-shop.json"),
        ("markdown", "diff-shop.md"),
    ] {
        let out = custos(
            &[
                "policy",
                "diff",
                "examples/shop/policy.yaml",
                PR_POLICY,
                "--format",
                format,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("13 widening changes"),
            "{}",
            stderr(&out)
        );
        golden(file, &stdout(&out));
    }
    let out = custos(
        &[
            "policy",
            "diff",
            "examples/shop/policy.yaml",
            PR_POLICY,
            "--format",
            "json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let email = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "customer.email" && c["purpose"] == "analytics")
        .expect("the e-mail moved into analytics");
    assert_eq!(email["impact"], "widening");
    assert_eq!(email["kind"], "action");
    assert_eq!(email["before"], "drop");
    assert_eq!(email["after"], "keep");
    assert_eq!(email["rule_before"], "default (no rule: drop)");
    assert_eq!(
        email["rule_after"],
        "purposes.analytics.rules[0] (pii.contact.email, line 22)"
    );
}

#[test]
fn policy_diff_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(shop("policy.yaml")).unwrap();
    // Same effect, other text: reordered fields and purposes, flow style, comments.
    let restyled = policy
        .replace(
            "      order_id: internal\n      created_at: public\n",
            "      created_at: public     # moved\n      order_id: { classes: [internal] }\n",
        )
        .replace(
            "    retention: 30d\n",
            "    retention: 30d   # thirty days\n",
        );
    assert_ne!(restyled, policy);
    let restyled = write(dir.path(), "restyled.yaml", &restyled);
    let out = custos(
        &["policy", "diff", "examples/shop/policy.yaml", &restyled],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 widening, 0 narrowing, 0 neutral"));
    assert!(stdout(&out).contains("no change in what any purpose receives"));

    // Narrowing only: exit 0, and it is reported.
    let narrower = write(
        dir.path(),
        "narrower.yaml",
        &policy.replace(
            "      - classes: [pii.contact.email, pii.name, behavioral.purchase]\n",
            "      - classes: [pii.name, behavioral.purchase]\n",
        ),
    );
    let out = custos(
        &["policy", "diff", "examples/shop/policy.yaml", &narrower],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 widening, 1 narrowing"),
        "{}",
        stdout(&out)
    );

    // Widening: exit 1, or 0 with --allow-widening (still reported).
    let args = ["policy", "diff", "examples/shop/policy.yaml", PR_POLICY];
    assert_eq!(custos(&args, None).status.code(), Some(1));
    let mut allowed = args.to_vec();
    allowed.push("--allow-widening");
    let out = custos(&allowed, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("13 widening"));

    // Unreadable or invalid policy, either side: exit 2.
    let bad = write(
        dir.path(),
        "bad.yaml",
        &policy.replace("retention: 30d", "retention: 30x"),
    );
    for (old, new) in [
        ("examples/shop/policy.yaml", "nope.yaml"),
        ("nope.yaml", "examples/shop/policy.yaml"),
        ("examples/shop/policy.yaml", bad.as_str()),
        ("git:no-such-ref:policy.yaml", "examples/shop/policy.yaml"),
        ("git:HEAD", "examples/shop/policy.yaml"),
    ] {
        let out = custos(&["policy", "diff", old, new], None);
        assert_eq!(out.status.code(), Some(2), "{old} {new}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
    let out = custos(&["policy", "diff", "examples/shop/policy.yaml", &bad], None);
    assert!(
        stderr(&out).contains(":19:16: bad duration unit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_diff_reads_git_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git runs");
        assert!(ok.status.success(), "git {args:?}: {}", stderr(&ok));
    };
    git(&["init", "-q"]);
    std::fs::copy(shop("policy.yaml"), dir.path().join("policy.yaml")).unwrap();
    git(&["add", "policy.yaml"]);
    git(&["commit", "-qm", "policy"]);
    std::fs::copy(root().join(PR_POLICY), dir.path().join("policy.yaml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["policy", "diff", "git:HEAD:policy.yaml", "policy.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("old: git:HEAD:policy.yaml (acme-shop@"));
    assert!(stdout(&out).contains("13 widening, 1 narrowing, 3 neutral"));
}

#[test]
fn policy_test_runs_the_shop_fixtures() {
    // Default fixtures: examples/shop/tests/*.yaml; they carry their own test keys.
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["policy", "test", "examples/shop/policy.yaml"])
        .current_dir(root())
        .env_remove("CUSTOS_KEY_ANALYTICS")
        .env_remove("CUSTOS_KEY_MARKETING")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    for file in ["analytics", "marketing", "support", "lifecycle"] {
        assert!(
            text.contains(&format!("examples/shop/tests/{file}.yaml")),
            "{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(
        text.contains("cases: 15 passed, 0 failed") || text.contains(" passed, 0 failed"),
        "{text}"
    );
}

#[test]
fn policy_test_reports_failures_and_bad_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let failing = write(
        dir.path(),
        "failing.yaml",
        "keys: { analytics: analytics-secret, marketing: marketing-secret }\nstream: orders\nnow: 2026-11-23T00:00:00Z\ncases:\n  - name: analytics wants the e-mail\n    value: { order_id: o-1, created_at: 2026-11-20T09:15:00Z, customer: { id: c-1, email: a@example.com } }\n    expect:\n      analytics:\n        value: { order_id: o-1, created_at: 2026-11-20T09:15:00Z, customer: { id: ps_8f9a23de8e6476e1494214e707c5a4de, email: a@example.com } }\n      marketing: { has: [customer.id] }\n  - name: passes\n    value: { order_id: o-2, created_at: soon }\n    dead_letter: event_time\n",
    );
    let out = custos(
        &["policy", "test", "examples/shop/policy.yaml", &failing],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  analytics wants the e-mail (line 5)"),
        "{text}"
    );
    assert!(
        text.contains("- customer.email: expected \"a@example.com\", missing"),
        "{text}"
    );
    assert!(
        text.contains("marketing: expected an output, got suppressed (consent)"),
        "{text}"
    );
    assert!(text.contains("ok    passes"), "{text}");
    assert!(text.contains("2 cases: 1 passed, 1 failed"), "{text}");
    assert!(stderr(&out).contains("1 of 2 cases failed"));

    // A fixture error is exit 2 with its position; so is a bad policy.
    let typo = write(
        dir.path(),
        "typo.yaml",
        "now: 2026-11-23T00:00:00Z\ncases:\n  - value: {}\n    expct: {}\n",
    );
    let out = custos(
        &["policy", "test", "examples/shop/policy.yaml", &typo],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("typo.yaml:4:5: unknown key `expct`"),
        "{}",
        stderr(&out)
    );
    let unknown = write(dir.path(), "unknown.yaml", "stream: orders\nnow: 2026-11-23T00:00:00Z\ncases:\n  - value: {}\n    expect: { billing: { has: [a] } }\n");
    let out = custos(
        &["policy", "test", "examples/shop/policy.yaml", &unknown],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("purpose `billing` has no output"),
        "{}",
        stderr(&out)
    );
    let out = custos(&["policy", "test", "nope.yaml", &typo], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_envelope_without_timestamp_or_event_time_has_no_age() {
    let input = concat!(
        "{\"value\":{\"order_id\":\"o-1\",\"customer\":{\"id\":\"c-1\"}}}\n",
        "{\"value\":{\"order_id\":\"o-2\",\"customer\":{\"id\":\"c-1\"}},\"timestamp\":null}\n",
        "{\"value\":{\"order_id\":\"o-3\",\"customer\":{\"id\":\"c-1\"}},\"timestamp\":\"2026-11-22T00:00:00Z\"}\n",
    );
    let policy = shop("policy.yaml");
    let out = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--purpose",
            "support",
            "--envelope",
            "--now",
            NOW,
        ],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["value"]["order_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["o-3"]);
    assert_eq!(
        stderr(&out).matches("event_time").count(),
        2,
        "{}",
        stderr(&out)
    );
}

fn apply_avro(extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "apply",
        "examples/shop/policy.yaml",
        "--stream",
        "orders_avro",
        "--input",
        "examples/shop/orders-avro.ndjson",
        "--now",
        "2026-11-25T00:00:00Z",
    ];
    args.extend_from_slice(extra);
    custos(&args, None)
}

#[test]
fn apply_governs_avro_in_its_json_encoding_with_derived_schemas() {
    // Without the writer schema, an Avro stream is refused with what to do.
    let out = apply_avro(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--schema FILE.avsc"),
        "{}",
        stderr(&out)
    );

    let out = apply_avro(&["--schema", "schemas/avro/shop-order.avsc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_analytics = lines.iter().find(|l| l["purpose"] == "analytics").unwrap();
    let v = &first_analytics["value"];
    // Avro's JSON encoding: the union branch is named; the date generalized
    // to a year changed the field's type to string.
    assert_eq!(
        v["customer"]["birth_date"],
        serde_json::json!({"string": "1985"})
    );
    assert!(v["customer"]["id"].as_str().unwrap().starts_with("ps_"));
    assert!(v["customer"].get("email").is_none() && v["payment"].get("card_number").is_none());
    assert!(
        v.get("attributes").is_none() && v.get("channel").is_none(),
        "unclassified: dropped"
    );
    // The fingerprint is the derived schema's, the one `schema derive` prints.
    let fp = first_analytics["schema"].as_str().unwrap().to_string();
    let derive = custos(
        &[
            "schema",
            "derive",
            "examples/shop/policy.yaml",
            "--stream",
            "orders_avro",
            "--purpose",
            "analytics",
            "--schema",
            "schemas/avro/shop-order.avsc",
        ],
        None,
    );
    assert!(derive.status.success(), "{}", stderr(&derive));
    assert!(stderr(&derive).contains(&fp), "{} vs {fp}", stderr(&derive));
    let derived: Value = serde_json::from_str(&stdout(&derive)).unwrap();
    let text = derived.to_string();
    assert!(
        !text.contains("card_number")
            && !text.contains("health_notes")
            && text.contains("custos.action")
    );
    // support keeps the card masked and the email (classified by the PII tag).
    let support = lines.iter().find(|l| l["purpose"] == "support").unwrap();
    assert_eq!(
        support["value"]["payment"]["card_number"],
        "***************1111"
    );
    assert_eq!(
        support["value"]["customer"]["email"],
        serde_json::json!({"string": "ada@example.com"})
    );
    assert_ne!(support["schema"], first_analytics["schema"]);

    // A value that does not fit the writer schema: a `schema` dead letter, and the rest flows.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let good = std::fs::read_to_string("examples/shop/orders-avro.ndjson").unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&input, format!("{{\"order_id\": 5}}\n{first}\n")).unwrap();
    let dl = dir.path().join("dl.ndjson");
    let out = custos(
        &[
            "apply",
            "examples/shop/policy.yaml",
            "--stream",
            "orders_avro",
            "--schema",
            "schemas/avro/shop-order.avsc",
            "--input",
            input.to_str().unwrap(),
            "--now",
            "2026-11-25T00:00:00Z",
            "--dead-letter",
            dl.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "the good order to both purposes"
    );
    let dead: Value = serde_json::from_str(std::fs::read_to_string(&dl).unwrap().trim()).unwrap();
    assert_eq!(dead["reason"], "schema");
}

#[test]
fn explain_with_a_schema_names_where_each_class_came_from() {
    let out = custos(
        &[
            "explain",
            "examples/shop/policy.yaml",
            "--stream",
            "orders_avro",
            "--schema",
            "schemas/avro/shop-order.avsc",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let field = |p: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("no {p}"))
            .clone()
    };
    assert_eq!(
        field("customer.email")["classes"],
        serde_json::json!([{"class": "pii", "from": "tag PII"}])
    );
    assert_eq!(
        field("customer.name")["classes"][0]["from"],
        "schema `classes`"
    );
    assert!(field("customer.id")["classes"][0]["from"]
        .as_str()
        .unwrap()
        .starts_with("policy line"));
    assert_eq!(
        field("channel")["purposes"][0]["action"],
        "drop (unclassified)"
    );
    assert_eq!(
        field("payment.card_number")["purposes"][1]["action"],
        "mask(keep_first=0, keep_last=4, char=*)"
    );
    // A record classified as a whole, not kept, with nothing classified
    // inside: removed, as `schema derive` shows; its members likewise.
    let dir = tempfile::tempdir().unwrap();
    let avsc = dir.path().join("blob.avsc");
    std::fs::write(&avsc, r#"{"type":"record","name":"O","fields":[{"name":"created_at","type":"long","classes":["public"]},{"name":"blob","type":{"type":"record","name":"B","fields":[{"name":"a","type":"string"}]},"classes":["pii.identifier"]}]}"#).unwrap();
    let out = custos(
        &[
            "explain",
            "examples/shop/policy.yaml",
            "--stream",
            "orders_avro",
            "--schema",
            avsc.to_str().unwrap(),
            "--purpose",
            "analytics",
        ],
        None,
    );
    let text = stdout(&out);
    assert!(
        text.contains("drop (a record passes whole only where kept)"),
        "{text}"
    );
    assert!(
        text.contains("drop (an unnamed member passes only where kept)"),
        "{text}"
    );
    // --schema needs --stream.
    let out = custos(
        &[
            "explain",
            "examples/shop/policy.yaml",
            "--schema",
            "schemas/avro/shop-order.avsc",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
}

const ENC_POLICY: &str = r#"version: 1
name: enc
keys:
  kek: { env: CUSTOS_KEY_ANALYTICS }
purposes:
  support:
    basis: contract
    retention: 30d
    rules:
      - { classes: [internal], action: keep }
      - { classes: [pii.contact.email, pii.name], action: { encrypt: { key: kek } } }
streams:
  orders:
    topic: shop.orders
    subject: customer.id
    fields:
      order_id: internal
      customer.id: internal
      customer.email: pii.contact.email
      customer.name: pii.name
      notes: { classes: [internal], scan: true }
    outputs:
      support: shop.orders.support
"#;

/// `apply --keys` encrypts under per-subject keys it writes to a file;
/// `decrypt` reads them back, refuses tokens moved between events, and
/// answers "[key destroyed]" once a key is tombstoned.
#[test]
fn apply_encrypts_and_decrypt_restores_refuses_moves_and_honours_destroyed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.yaml", ENC_POLICY);
    let input = write(
        dir.path(),
        "in.ndjson",
        concat!(
            r#"{"order_id":"o-1","customer":{"id":"c-1","email":"ann@example.com","name":"Ann"},"notes":"cc bob@example.org"}"#,
            "\n",
            r#"{"order_id":"o-2","customer":{"id":"c-2","email":"bo@example.com","name":"Bo"}}"#,
            "\n",
            r#"{"order_id":"o-3","customer":{"id":"c-1","email":"ann@example.com","name":7}}"#,
            "\n",
        ),
    );
    let keys = dir.path().join("keys.ndjson").display().to_string();
    let out = custos(
        &[
            "apply", &policy, "--stream", "orders", "--input", &input, "--keys", &keys,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("ann@example.com") && !text.contains("bob@example.org"),
        "{text}"
    );
    let outputs = lines(&out);
    assert_eq!(outputs.len(), 3);
    assert!(outputs[0]["value"]["customer"]["email"]
        .as_str()
        .unwrap()
        .starts_with("enc:v1:"));
    assert!(outputs[0]["value"]["notes"]
        .as_str()
        .unwrap()
        .starts_with("cc enc:v1:"));
    // One key per subject, in a file only its owner can read.
    let key_lines: Vec<Value> = std::fs::read_to_string(&keys)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(key_lines.len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second run reuses c-1's key and adds none.
    let again = custos(
        &[
            "apply", &policy, "--stream", "orders", "--input", &input, "--keys", &keys,
        ],
        None,
    );
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&keys).unwrap().lines().count(), 2);

    let decrypt = |input: &str| {
        custos(
            &["decrypt", "--policy", &policy, "--keys", &keys],
            Some(input.as_bytes()),
        )
    };
    let clear = decrypt(&text);
    assert!(clear.status.success(), "{}", stderr(&clear));
    let clear = lines(&clear);
    assert_eq!(clear[0]["value"]["customer"]["email"], "ann@example.com");
    assert_eq!(clear[0]["value"]["notes"], "cc bob@example.org");
    assert_eq!(clear[2]["value"]["customer"]["name"], 7);
    assert_eq!(clear[1]["value"]["customer"]["name"], "Bo");

    // c-2's e-mail token pasted into c-1's first event: refused, left as is.
    let mut moved = outputs.clone();
    moved[0]["value"]["customer"]["email"] = outputs[1]["value"]["customer"]["email"].clone();
    let moved_text: String = moved.iter().map(|v| format!("{v}\n")).collect();
    let refused = decrypt(&moved_text);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("did not decrypt"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        lines(&refused)[0]["value"]["customer"]["email"],
        outputs[1]["value"]["customer"]["email"]
    );

    // A line that is not an output line (not JSON, a member twice) is
    // written as read and counted; the lines after it are still decrypted.
    let first = format!("{}\n", outputs[0]);
    let dup = format!("{{\"value\":{},\"value\":{{}}}}\n", outputs[0]["value"]);
    let mixed = format!("not json\n{dup}{first}");
    let partial = decrypt(&mixed);
    assert_eq!(partial.status.code(), Some(1), "{}", stderr(&partial));
    let out = stdout(&partial);
    let out: Vec<&str> = out.lines().collect();
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0], "not json");
    assert_eq!(format!("{}\n", out[1]), dup);
    let last: Value = serde_json::from_str(out[2]).unwrap();
    assert_eq!(last["value"]["customer"]["email"], "ann@example.com");
    assert!(
        stderr(&partial).contains("2 value(s) or line(s)"),
        "{}",
        stderr(&partial)
    );

    // An erasure of c-1 (apply --erasure with the keys file) tombstones its
    // key (crypto-shredding): its values never come back. The keys file
    // lost its final newline meanwhile: the tombstone still gets a line.
    let c1_id = {
        let token = outputs[0]["value"]["customer"]["email"].as_str().unwrap();
        let raw = base64::engine::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &token["enc:v1:".len()..],
        )
        .unwrap();
        hex::encode(&raw[..16])
    };
    let trimmed = std::fs::read_to_string(&keys)
        .unwrap()
        .trim_end()
        .to_string();
    std::fs::write(&keys, trimmed).unwrap();
    let erasure = write(dir.path(), "erasure.ndjson", "{\"subject\":\"c-1\"}\n");
    let erased = custos(
        &[
            "apply",
            &policy,
            "--stream",
            "orders",
            "--input",
            &input,
            "--keys",
            &keys,
            "--erasure",
            &erasure,
        ],
        None,
    );
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert!(
        !stdout(&erased).contains("\"c-1\""),
        "erased: nothing of c-1 is emitted"
    );
    let after: Vec<Value> = std::fs::read_to_string(&keys)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after.len(), 3, "two keys and one tombstone");
    assert!(after[2]["value"].is_null() && after[2]["key"].as_str().unwrap().ends_with(&c1_id));
    assert!(key_lines.iter().any(|l| l["key"] == after[2]["key"]));
    let shredded = decrypt(&text);
    assert!(shredded.status.success(), "{}", stderr(&shredded));
    let shredded = lines(&shredded);
    assert_eq!(shredded[0]["value"]["customer"]["email"], "[key destroyed]");
    assert_eq!(shredded[0]["value"]["notes"], "cc [key destroyed]");
    assert_eq!(shredded[2]["value"]["customer"]["name"], "[key destroyed]");
    assert_eq!(shredded[1]["value"]["customer"]["email"], "bo@example.com");

    // A keys file kept across runs needs the audit key its subjects are named under.
    let mut no_audit = Command::new(env!("CARGO_BIN_EXE_custos"));
    no_audit
        .args([
            "apply", &policy, "--stream", "orders", "--input", &input, "--keys", &keys,
        ])
        .env("CUSTOS_KEY_ANALYTICS", "analytics-secret")
        .env_remove("CUSTOS_AUDIT_KEY");
    let refused = no_audit.output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--keys needs CUSTOS_AUDIT_KEY"));

    // Keys records that are not custos's (tampering): the lines are still
    // decrypted with the rest, and the exit status says so.
    let mut tampered = std::fs::read_to_string(&keys).unwrap();
    tampered.push_str("{\"key\":\"kek/XYZ/00\",\"value\":{\"v\":1}}\n");
    std::fs::write(&keys, tampered).unwrap();
    let warned = decrypt(&text);
    assert_eq!(warned.status.code(), Some(1));
    assert!(
        stderr(&warned).contains("not custos's"),
        "{}",
        stderr(&warned)
    );
    assert_eq!(
        lines(&warned)[1]["value"]["customer"]["email"],
        "bo@example.com"
    );

    let nowhere = custos(&["decrypt"], Some(b""));
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(
        stderr(&nowhere).contains("--config FILE"),
        "{}",
        stderr(&nowhere)
    );
}
