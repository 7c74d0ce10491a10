#!/usr/bin/env python3
"""Checks the JSON Schemas in schemas/ against what custos reads and writes.

- every schema is a valid draft 2020-12 schema;
- the example and test policies, the example configs, the example consent
  and erasure records validate, and so does every audit record that
  `custos apply --audit` writes for the example;
- the schemas are not vacuous: mutated policies and configs that custos
  refuses are refused by the schemas too (and custos still refuses them);
- the example Avro schema parses and classifies only with known classes or
  the policy's tags.

Usage: python3 tests/schemas/check_schemas.py --bin target/debug/custos
Needs: PyYAML, jsonschema (pip).
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import tomllib

try:
    import jsonschema
    import yaml
except ImportError:  # pragma: no cover
    print("check_schemas: needs PyYAML and jsonschema (pip install PyYAML jsonschema)", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.path.join(ROOT, "schemas")
ENV = {
    "CUSTOS_KEY_ANALYTICS": "analytics-secret-0123456789",
    "CUSTOS_KEY_MARKETING": "marketing-secret-0123456789",
    "CUSTOS_AUDIT_KEY": "audit-secret-0123456789abcdef",
}

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok   {what}", flush=True)
    else:
        failed += 1
        print(f"  FAIL {what}", flush=True)


def validator(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(v, doc):
    return [f"{e.json_path}: {e.message[:160]}" for e in v.iter_errors(doc)]


def path(*p):
    return os.path.join(ROOT, *p)


def custos(binary, *args, stdin=None):
    env = dict(os.environ, **ENV)
    return subprocess.run([binary, *args], input=stdin, capture_output=True, env=env, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the custos binary")
    args = ap.parse_args()

    print("== schemas are valid JSON Schema (draft 2020-12)")
    v = {}
    for name in sorted(os.listdir(SCHEMAS)):
        if name.endswith(".schema.json"):
            try:
                v[name] = validator(name)
                check(True, name)
            except Exception as e:  # noqa: BLE001
                check(False, f"{name}: {e}")

    print("== policies")
    pv = v["policy.schema.json"]
    policies = [path("examples", "shop", "policy.yaml"), path("tests", "diff", "shop-pr.yaml")]
    for p in policies:
        with open(p) as f:
            doc = yaml.safe_load(f)
        errs = errors(pv, doc)
        check(not errs, f"{os.path.relpath(p, ROOT)} validates {errs[:3]}")
    with open(policies[0]) as f:
        base = yaml.safe_load(f)
    mutations = {
        "unknown top-level key": lambda d: d.__setitem__("purpose", {}),
        "unknown basis": lambda d: d["purposes"]["analytics"].__setitem__("basis", "because"),
        "retention without unit": lambda d: d["purposes"]["analytics"].__setitem__("retention", "30"),
        "unknown action": lambda d: d["purposes"]["analytics"]["rules"][0].__setitem__("action", "publish"),
        "inline secret": lambda d: d["keys"].__setitem__("analytics", {"value": "s3cret"}),
        "unknown stream key": lambda d: d["streams"]["orders"].__setitem__("topics", "x"),
        "bad unclassified": lambda d: d["streams"]["orders"].__setitem__("unclassified", "keep"),
        "generalize with two options": lambda d: d["purposes"]["analytics"]["rules"][2].__setitem__(
            "action", {"generalize": {"round": 1, "prefix": 2}}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for label, mutate in mutations.items():
            doc = copy.deepcopy(base)
            mutate(doc)
            check(bool(errors(pv, doc)), f"schema refuses a policy with {label}")
            f = os.path.join(tmp, "policy.yaml")
            with open(f, "w") as out:
                yaml.safe_dump(doc, out, sort_keys=False)
            r = custos(args.bin, "policy", "check", f)
            check(r.returncode == 1, f"custos policy check refuses it too (exit {r.returncode})")

    print("== configs")
    cv = v["config.schema.json"]
    for p in [path("examples", "custos.toml"), path("examples", "compose", "custos.toml")]:
        with open(p, "rb") as f:
            doc = tomllib.load(f)
        errs = errors(cv, doc)
        check(not errs, f"{os.path.relpath(p, ROOT)} validates {errs[:3]}")
    with open(path("examples", "custos.toml"), "rb") as f:
        cbase = tomllib.load(f)
    for label, mutate in {
        "unknown section": lambda d: d.__setitem__("kafkaa", {}),
        "unknown guarantee": lambda d: d.setdefault("delivery", {}).__setitem__("guarantee", "maybe_once"),
        "a managed librdkafka property": lambda d: d.setdefault("kafka", {}).setdefault("properties", {}).__setitem__(
            "enable.auto.commit", "true"),
    }.items():
        doc = copy.deepcopy(cbase)
        mutate(doc)
        check(bool(errors(cv, doc)), f"schema refuses a config with {label}")

    print("== consent and erasure records")
    for name, file in [("consent-record.schema.json", "consent.ndjson"), ("erasure-record.schema.json", "erasure.ndjson")]:
        with open(path("examples", "shop", file)) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        errs = [e for doc in lines for e in errors(v[name], doc)]
        check(lines and not errs, f"examples/shop/{file}: {len(lines)} records validate {errs[:3]}")
    check(bool(errors(v["consent-record.schema.json"], {"subject": "c-1", "purposes": {"marketing": "yes"}})),
          "consent schema refuses a purpose that is not true or false")

    print("== audit records written by custos apply --audit")
    av = v["audit-record.schema.json"]
    with tempfile.TemporaryDirectory() as tmp:
        trail = os.path.join(tmp, "audit.ndjson")
        r = custos(args.bin, "apply", path("examples", "shop", "policy.yaml"), "--stream", "orders",
                   "--input", path("examples", "shop", "orders.ndjson"),
                   "--consent", path("examples", "shop", "consent.ndjson"),
                   "--erasure", path("examples", "shop", "erasure.ndjson"),
                   "--now", "2026-11-23T00:00:00Z", "--audit", trail)
        check(r.returncode == 0, f"custos apply --audit runs ({r.stderr.strip()[-200:]})")
        with open(trail) as f:
            records = [json.loads(line) for line in f if line.strip()]
        kinds = sorted({rec["type"] for rec in records})
        errs = [e for rec in records for e in errors(av, rec)]
        check(len(records) > 0 and not errs, f"{len(records)} audit records ({', '.join(kinds)}) validate {errs[:3]}")
        check(kinds == ["dead_letter", "record"], f"the example trail holds both record types ({kinds})")
        bad = dict(records[0], subject="c-1")
        check(bool(errors(av, bad)), "audit schema refuses a raw subject id")
    # The worker's erasure record (golden file written by the audit unit tests).
    with open(path("tests", "golden", "audit-erasure.json")) as f:
        erasure_rec = json.loads(f.read())
    errs = errors(av, erasure_rec)
    check(not errs, f"tests/golden/audit-erasure.json (type erasure) validates {errs[:3]}")
    check(bool(errors(av, dict(erasure_rec, subject="c-42"))), "audit schema refuses an erasure record with a raw subject id")
    check(bool(errors(av, {k: v for k, v in erasure_rec.items() if k != "actions"})), "audit schema refuses an erasure record without actions")
    with open(path("tests", "golden", "audit-retention.json")) as f:
        retention_rec = json.loads(f.read())
    errs = errors(av, retention_rec)
    check(not errs, f"tests/golden/audit-retention.json (type retention) validates {errs[:3]}")
    check(bool(errors(av, dict(retention_rec, tombstones=0))), "audit schema refuses a retention record without tombstones")
    with open(path("tests", "golden", "audit-summary.json")) as f:
        summary_rec = json.loads(f.read())
    errs = errors(av, summary_rec)
    check(not errs, f"tests/golden/audit-summary.json (type summary) validates {errs[:3]}")
    check(bool(errors(av, dict(summary_rec, subject="c-1"))), "audit schema refuses a summary naming a subject")
    check(bool(errors(av, dict(summary_rec, source={k: v for k, v in summary_rec["source"].items() if k != "offsets"}))), "audit schema refuses a summary without its offsets")

    print("== the example Avro schema")
    with open(path("schemas", "avro", "shop-order.avsc")) as f:
        avsc = json.load(f)
    classes, tags = [], []

    def walk(t):
        if isinstance(t, dict):
            for fld in t.get("fields", []):
                classes.extend(fld.get("classes", []))
                tags.extend(fld.get("confluent:tags", []))
                walk(fld["type"])
            if "items" in t:
                walk(t["items"])
            if "values" in t:
                walk(t["values"])
        elif isinstance(t, list):
            for x in t:
                walk(x)

    walk(avsc)
    taxonomy_roots = {"pii", "sensitive", "behavioral", "internal", "public"}
    policy_tags = set(base.get("tags", {}))
    check(avsc.get("type") == "record" and classes and tags, f"{len(classes)} classes and {len(tags)} tags found")
    check(all(c.split(".")[0] in taxonomy_roots for c in classes), "every `classes` value is under the taxonomy")
    check(set(tags) <= policy_tags, f"every `confluent:tags` value is mapped by the example policy's tags ({sorted(set(tags))})")

    print("== OpenLineage events (custos lineage: the worker's RunEvents, offline)")
    lv = validator(os.path.join("openlineage", "run-event.schema.json"))
    r = custos(args.bin, "lineage", path("examples", "shop", "policy.yaml"), "--namespace", "kafka://kafka:9092")
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    errs = [e for ev in events for e in errors(lv, ev)]
    check(r.returncode == 0 and len(events) == len(base["streams"]) and not errs,
          f"{len(events)} START events (one per stream) validate against the OpenLineage RunEvent schema {errs[:3]}")
    check(len({ev["run"]["runId"] for ev in events}) == len(events), "each stream is its own run")
    # The worker's COMPLETE and FAIL events (on the lineage topic and over
    # HTTP) are the START event with another eventType and eventTime (the
    # worker tests check it): they validate too.
    for kind in ("COMPLETE", "FAIL"):
        errs = [e for ev in events for e in errors(lv, dict(ev, eventType=kind))]
        check(bool(events) and not errs, f"{kind} events validate against the RunEvent schema {errs[:3]}")
    bad = dict(events[0], eventType="BEGIN") if events else {}
    check(bool(errors(lv, bad)), "the OpenLineage schema refuses an unknown eventType")
    bad = json.loads(json.dumps(events[0])) if events else {}
    if bad:
        bad["outputs"][0]["facets"]["columnLineage"].pop("_producer")
    check(bool(errors(lv, bad)), "the OpenLineage schema refuses a facet without _producer")

    print(f"schemas: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
