#!/usr/bin/env python3
"""Static checks of the deployment files, with the real parsers.

- Dockerfile (dockerfile-parse): multi-stage, the build stage installs the
  same system packages as .ci/run and builds with --locked, a slim runtime,
  a numeric non-root USER, ENTRYPOINT/CMD, OCI labels, EXPOSE of custos's
  default HTTP port, COPY sources present and not excluded by .dockerignore.
- docker-compose.yml (Debian's docker-compose `config`): valid, every mounted
  file exists, the dependency chain and healthchecks, custos's config and
  policy mounts and ports against examples/compose/custos.toml, Prometheus'
  scrape target and rule file, Grafana's provisioning; the compose custos
  config and the policy load with the real custos; the init and producer
  scripts run under sh against stand-in Kafka tools.
- Alert rules: promtool check rules, promtool test rules.
- Dashboard: every query parses as PromQL (promtool, Grafana variables
  substituted), names only metrics defined in src/telemetry.rs (the real
  scrape comparison is tests/deploy/scrape_test.py).
- helm/custos (helm-python-sdk: Helm's own library): lint, render with the
  default values and the value sets in tests/deploy/values/, every rendered
  object validated against the Kubernetes schemas (kubernetes-validate) for
  the oldest and a recent supported version, ServiceMonitor and
  PrometheusRule checked by structure, the chart's promises checked on the
  rendered objects; the bad value sets must be refused.

Prints one line per check and `deploy: N passed, M failed`; exit 1 on any
failure.

    python3 tests/deploy/check_deploy.py --bin target/debug/custos
"""

import argparse
import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "custos")
RULES = os.path.join(CHART, "rules", "custos.rules.yml")
DASHBOARD = os.path.join(CHART, "dashboards", "custos-governance.json")
RULES_TEST = os.path.join(ROOT, "tests", "deploy", "custos.rules.test.yml")
VALUES_DIR = os.path.join(ROOT, "tests", "deploy", "values")
COMPOSE = os.path.join(ROOT, "docker-compose.yml")
COMPOSE_CONFIG = os.path.join(ROOT, "examples", "compose", "custos.toml")
SHOP_POLICY = os.path.join(ROOT, "examples", "shop", "policy.yaml")
KUBE_VERSIONS = ["1.25.0", "1.33.0"]  # Chart.yaml kubeVersion's floor, and a recent one
DEMO_ENV = {
    "CUSTOS_AUDIT_KEY": "check-deploy-audit-key-0123456789",
    "CUSTOS_KEY_ANALYTICS": "check-deploy-analytics-key-0123",
    "CUSTOS_KEY_MARKETING": "check-deploy-marketing-key-0123",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.section = ""

    def start(self, name):
        self.section = name
        print(f"== {name}", flush=True)

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok   {what}", flush=True)
        else:
            self.failed += 1
            print(f"  FAIL {what}" + (f"\n       {detail}" if detail else ""), flush=True)
        return ok


C = Checks()


def read(path):
    with open(path) as f:
        return f.read()


def run(argv, env=None, **kw):
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def custos_env():
    env = dict(os.environ)
    env = {k: v for k, v in env.items() if not k.startswith("CUSTOS_")}
    env.update(DEMO_ENV)
    return env


def custos_loads_config(binary, config_path, what):
    """The real custos parses the config (audit verify reads config and audit key, then an empty trail)."""
    empty = tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False)
    empty.close()
    try:
        r = run([binary, "audit", "verify", "--config", config_path, "--input", empty.name], env=custos_env(), timeout=60)
    finally:
        os.unlink(empty.name)
    C.check(r.returncode == 0, f"custos loads {what}", r.stdout.strip())


def custos_policy_check(binary, policy_path, what):
    r = run([binary, "policy", "check", policy_path], env=custos_env(), timeout=60)
    C.check(r.returncode == 0 and "warning" not in r.stdout, f"custos policy check accepts {what}", r.stdout.strip())


def ci_packages():
    """The system packages .ci/run installs before building."""
    text = read(os.path.join(ROOT, ".ci", "run"))
    m = re.search(r"for pkg in ([^;]+); do", text)
    return set(m.group(1).split()) if m else set()


def default_http_port():
    m = re.search(r'fn default_listen\(\) -> String \{\s*"([^"]+)"', read(os.path.join(ROOT, "src", "config.rs")))
    return int(m.group(1).rsplit(":", 1)[1]) if m else None


def telemetry_metrics():
    text = read(os.path.join(ROOT, "src", "telemetry.rs"))
    names = set(re.findall(r'"(custos_[a-z_]+)"', text))
    hist = {n for n in names if n.endswith("_seconds")}
    for h in hist:
        names.update({h + "_bucket", h + "_sum", h + "_count"})
    return names


# ---------------------------------------------------------------- Dockerfile

def dockerignore_patterns():
    pats = []
    for line in read(os.path.join(ROOT, ".dockerignore")).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line.rstrip("/"))
    return pats


def ignored(path, patterns):
    path = path.rstrip("/")
    parts = path.split("/")
    for p in patterns:
        p = p.lstrip("/")
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), p):
                return True
    return False


def check_dockerfile():
    from dockerfile_parse import DockerfileParser

    C.start("Dockerfile (dockerfile-parse)")
    df = DockerfileParser(path=os.path.join(ROOT, "Dockerfile"))
    instr = df.structure
    # Stages: split at FROM.
    stages = []
    for i in instr:
        if i["instruction"] == "FROM":
            stages.append({"from": i["value"], "lines": []})
        elif stages:
            stages[-1]["lines"].append(i)
    args = {}
    for i in instr:
        if i["instruction"] == "ARG" and "=" in i["value"] and (not stages or i["startline"] < min(
                x["startline"] for x in instr if x["instruction"] == "FROM")):
            k, v = i["value"].split("=", 1)
            args[k] = v.strip('"')

    def expand(s):
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)

    C.check(len(stages) >= 2, f"multi-stage ({len(stages)} stages)")
    build, final = stages[0], stages[-1]
    build_from = expand(build["from"])
    final_from = expand(final["from"]).split()[0]
    C.check(build_from.startswith("rust:"), f"build stage FROM the Rust toolchain ({build_from})")
    C.check(re.match(r"^(debian:[\w.-]+-slim|gcr\.io/distroless/)", final_from) is not None,
            f"runtime stage FROM a small base ({final_from})")
    runs = " ".join(i["value"] for i in build["lines"] if i["instruction"] == "RUN")
    m = re.search(r"apt-get install[^&]*?--no-install-recommends\s+([^&]+?)(?:&&|$)", re.sub(r"\\\s*\n", " ", runs))
    pkgs = set(m.group(1).replace("\\", " ").split()) if m else set()
    C.check(pkgs and pkgs == ci_packages(), f"build stage installs the system packages .ci/run installs ({sorted(pkgs)})",
            f".ci/run: {sorted(ci_packages())}")
    C.check(re.search(r"cargo build --release --locked --bin custos", runs) is not None,
            "build stage runs cargo build --release --locked --bin custos")
    cargo = tomllib.loads(read(os.path.join(ROOT, "Cargo.toml")))
    C.check(cargo.get("package", {}).get("rust-version") is not None, "Cargo.toml has a rust-version")

    final_instr = {i["instruction"] for i in final["lines"]}
    user = [i["value"] for i in final["lines"] if i["instruction"] == "USER"]
    C.check(bool(user) and re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", user[-1]) is not None,
            f"runtime USER is numeric and non-root ({user[-1] if user else None}): runAsNonRoot can verify it")
    ent = [i["value"] for i in final["lines"] if i["instruction"] == "ENTRYPOINT"]
    cmd = [i["value"] for i in final["lines"] if i["instruction"] == "CMD"]
    C.check(bool(ent) and json.loads(ent[-1]) == ["custos"], f"ENTRYPOINT [\"custos\"] ({ent})")
    C.check(bool(cmd) and json.loads(cmd[-1]) == ["run", "--config", "/etc/custos/custos.toml"],
            f"CMD [\"run\", \"--config\", \"/etc/custos/custos.toml\"] ({cmd})")
    expose = [i["value"] for i in final["lines"] if i["instruction"] == "EXPOSE"]
    C.check(expose and int(expose[-1].split("/")[0]) == default_http_port(),
            f"EXPOSE {expose} is custos's default [http] listen port ({default_http_port()})")
    labels = df.labels
    needed = ["title", "description", "version", "licenses", "source", "revision"]
    missing = [n for n in needed if f"org.opencontainers.image.{n}" not in labels]
    C.check(not missing, "OCI labels org.opencontainers.image.{" + ",".join(needed) + "}", f"missing: {missing}")
    C.check(labels.get("org.opencontainers.image.licenses") == cargo["package"].get("license"),
            "OCI license label equals Cargo.toml's license")
    C.check("ADD" not in {i["instruction"] for i in instr}, "no ADD (nothing fetched at build time)")
    C.check(any(i["instruction"] == "COPY" and "--from=build" in i["value"] for i in final["lines"]),
            "runtime stage copies only the built binary from the build stage (plus files from the context)")
    C.check("WORKDIR" in final_instr, "runtime stage has a WORKDIR (no writes needed: read-only root works)")

    # COPY sources: present in the repository and not excluded by .dockerignore.
    pats = dockerignore_patterns()
    for must in ("target", ".git"):
        C.check(must in pats, f".dockerignore excludes {must}/")
    srcs = []
    for i in instr:
        if i["instruction"] == "COPY" and "--from=" not in i["value"]:
            parts = i["value"].split()
            srcs += [p for p in parts[:-1] if not p.startswith("--")]
    bad = [s for s in srcs if not os.path.exists(os.path.join(ROOT, s)) or ignored(s, pats)]
    C.check(srcs and not bad, f"every COPY source exists and is in the build context ({len(srcs)})", f"bad: {bad}")
    # What the build reads: include_str! paths and [[bench]] targets.
    needed_files = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "src")):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(dirpath, f)
                for inc in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', read(p)):
                    needed_files.append(os.path.relpath(os.path.normpath(os.path.join(dirpath, inc)), ROOT))
    for b in cargo.get("bench", []):
        needed_files.append(b.get("path", f"benches/{b['name']}.rs"))
    copied = lambda f: any(f == s.rstrip("/") or f.startswith(s.rstrip("/") + "/") for s in srcs)
    not_copied = [f for f in needed_files if not copied(f) or ignored(f, pats)]
    C.check(not not_copied, f"files the build reads (include_str!, [[bench]]) are copied ({len(needed_files)})",
            f"missing: {not_copied}")


# ------------------------------------------------------------ docker-compose

def compose_config():
    exe = shutil.which("docker-compose")
    if not exe:
        C.check(False, "docker-compose is installed (apt-get install docker-compose)")
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOS_", "GRAFANA_", "COMPOSE_"))}
    r = run([exe, "-f", COMPOSE, "config"], env=env, cwd=ROOT, timeout=120)
    if not C.check(r.returncode == 0, "docker-compose config accepts docker-compose.yml", r.stdout[-2000:]):
        return None
    return yaml.safe_load(r.stdout)


def run_script_with_stand_ins(script, data_dir, timeout=30):
    """Runs a compose service's sh script with stand-in Kafka tools; returns (rc, calls, output)."""
    tmp = tempfile.mkdtemp(prefix="compose-script-")
    try:
        bindir = os.path.join(tmp, "opt", "kafka", "bin")
        os.makedirs(bindir)
        calls = os.path.join(tmp, "calls")
        for tool in ("kafka-topics.sh", "kafka-console-producer.sh", "kafka-avro-console-producer"):
            body = f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n'
            if "producer" in tool:
                body += f'cat >> "{calls}.records"\n'
            p = os.path.join(bindir, tool)
            with open(p, "w") as f:
                f.write(body)
            os.chmod(p, stat.S_IRWXU)
        s = script.replace("$$", "$").replace("/opt/kafka/bin", bindir).replace("/data/", data_dir + "/")
        s = s.replace("while true; do", "for _once in 1; do")
        r = subprocess.run(["sh", "-c", s], env={"PATH": bindir + ":" + os.environ["PATH"], "INTERVAL_SECS": "0"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        out = {"calls": read(calls).splitlines() if os.path.exists(calls) else [],
               "records": read(calls + ".records").splitlines() if os.path.exists(calls + ".records") else []}
        return r.returncode, out, r.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_compose(binary):
    C.start("docker-compose.yml (Debian docker-compose)")
    cfg = compose_config()
    if cfg is None:
        return
    services = cfg["services"]
    expected = {"kafka", "kafka-init", "schema-registry", "custos", "producer", "prometheus", "grafana"}
    C.check(expected <= set(services), f"services {sorted(expected)}", f"have {sorted(services)}")
    C.check(services["kafka"]["image"].startswith("apache/kafka:"), "Kafka is the apache/kafka image")
    env = services["kafka"].get("environment", {})
    C.check("controller" in str(env.get("KAFKA_PROCESS_ROLES", "")) and "KAFKA_CONTROLLER_QUORUM_VOTERS" in env,
            "Kafka runs in KRaft mode (process roles broker,controller; quorum voters)")

    # Every bind mount's source exists.
    mounts = []
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            if isinstance(v, dict) and v.get("type") == "bind":
                mounts.append((name, v["source"], v["target"]))
            elif isinstance(v, str) and ":" in v:
                src, tgt = v.split(":")[:2]
                mounts.append((name, os.path.join(ROOT, src), tgt))
    missing = [(n, s) for n, s, _ in mounts if not os.path.exists(s)]
    C.check(mounts and not missing, f"every mounted file exists ({len(mounts)} mounts)", f"missing: {missing}")
    C.check(all(v.get("read_only") for svc in services.values() for v in svc.get("volumes", []) if isinstance(v, dict)),
            "every mount is read-only")

    def mount_of(svc, target):
        return next((os.path.relpath(s, ROOT) for n, s, t in mounts if n == svc and t == target), None)

    # Healthchecks and the dependency chain.
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            c = cond.get("condition") if isinstance(cond, dict) else "service_started"
            if c == "service_healthy":
                C.check("healthcheck" in services[dep], f"{name} waits for {dep} healthy, and {dep} has a healthcheck")
            if c == "service_completed_successfully":
                C.check(services[dep].get("restart", "no") == "no", f"{name} waits for {dep} to complete, and {dep} does not restart")
    dep = lambda a, b: (services[a].get("depends_on") or {}).get(b, {}).get("condition")
    C.check(dep("custos", "kafka") == "service_healthy" and dep("custos", "kafka-init") == "service_completed_successfully",
            "custos starts after Kafka is healthy and its topics and subject state exist")
    C.check(dep("producer", "custos") == "service_healthy", "the producer starts once custos is ready (/readyz)")
    C.check(dep("grafana", "prometheus") == "service_healthy", "Grafana starts once Prometheus is ready")

    # custos: image, hardening, config and policy mounts, ports.
    cu = services["custos"]
    C.check(cu.get("build", {}).get("dockerfile") == "Dockerfile" and os.path.samefile(cu["build"]["context"], ROOT),
            "custos is built from the repository's Dockerfile")
    C.check(cu.get("read_only") is True and "ALL" in cu.get("cap_drop", []) and cu.get("user") == "10001:10001",
            "custos runs read-only, as uid 10001, with every capability dropped")
    cmd = cu.get("command")
    config_target = cmd[cmd.index("--config") + 1] if cmd and "--config" in cmd else None
    C.check(config_target == "/etc/custos/custos.toml", f"custos runs with --config {config_target}")
    C.check(mount_of("custos", config_target) == "examples/compose/custos.toml",
            "examples/compose/custos.toml is mounted as the config")
    toml = tomllib.loads(read(COMPOSE_CONFIG))
    policy_target = os.path.normpath(os.path.join(os.path.dirname(config_target), toml["policy"]))
    policy_src = mount_of("custos", policy_target)
    C.check(policy_src == "examples/shop/policy.yaml", f"the config's policy ({policy_target}) is the mounted shop policy")
    C.check(toml["kafka"]["bootstrap_servers"] == "kafka:9092", "custos bootstraps from kafka:9092")
    port = int(toml.get("http", {}).get("listen", "0.0.0.0:9464").rsplit(":", 1)[1])
    C.check(port == default_http_port(), f"custos listens on its default port {port}")
    published = [str(p.get("target")) if isinstance(p, dict) else str(p).split(":")[-1] for p in cu.get("ports", [])]
    C.check(str(port) in published, f"the compose file publishes custos's port {port}")
    hc = " ".join(cu.get("healthcheck", {}).get("test", []))
    C.check(f"/dev/tcp/127.0.0.1/{port}" in hc and "/readyz" in hc, "custos's healthcheck asks /readyz on its port")
    envs = cu.get("environment", {})
    policy = yaml.safe_load(read(SHOP_POLICY))
    key_vars = {k["env"] for k in policy.get("keys", {}).values() if "env" in k}
    audit_var = toml["audit"]["key"]["env"]
    C.check(key_vars | {audit_var} <= set(envs), f"custos gets every key from the environment ({sorted(key_vars | {audit_var})})")
    C.check(all(len(envs[v]) >= 16 for v in key_vars | {audit_var}), "the demo keys are at least 16 bytes")
    if binary:
        custos_loads_config(binary, COMPOSE_CONFIG, "examples/compose/custos.toml (audit verify --config)")
        custos_policy_check(binary, SHOP_POLICY, "examples/shop/policy.yaml")

    # Topics: kafka-init creates what custos reads; the producer writes the stream's topic.
    stream_topics = {s["topic"] for s in policy["streams"].values()}
    state_topics = {policy["consent"]["topic"], policy["erasure"]["topic"]}
    init = services["kafka-init"]["command"][0] if isinstance(services["kafka-init"]["command"], list) else services["kafka-init"]["command"]
    rc, out, text = run_script_with_stand_ins(init, os.path.join(ROOT, "examples", "shop"))
    created = set()
    for call in out["calls"]:
        a = shlex.split(call)
        if a[0] == "kafka-topics.sh" and "--create" in a:
            created.add(a[a.index("--topic") + 1])
    C.check(rc == 0, "kafka-init's script runs under sh (stand-in Kafka tools)", text[-500:])
    C.check(stream_topics | state_topics <= created, f"kafka-init creates {sorted(stream_topics | state_topics)}", f"created {sorted(created)}")
    compacted = [c for c in out["calls"] if "cleanup.policy=compact" in c]
    C.check(all(any(f"--topic {t} " in c or f'--topic "{t}"' in c or c.endswith(f"--topic {t}") or f"--topic {t}" in c for c in compacted)
                for t in state_topics), "the consent and erasure topics are compacted")
    keyed = out["records"]
    n_state = sum(1 for f in ("consent", "erasure") for l in read(os.path.join(ROOT, "examples", "shop", f + ".ndjson")).splitlines() if l.strip())
    good_keys = [l for l in keyed if "|" in l and json.loads(l.split("|", 1)[1])["subject"] == l.split("|", 1)[0]]
    C.check(len(good_keys) == n_state == len(keyed), f"every consent/erasure record is produced keyed by its subject ({len(good_keys)}/{n_state})")
    def script(name):
        cmd = services[name]["command"]
        return cmd[0] if isinstance(cmd, list) else cmd
    rc, out, text = run_script_with_stand_ins(script("producer"), os.path.join(ROOT, "examples", "shop"))
    topics = {shlex.split(c)[shlex.split(c).index("--topic") + 1] for c in out["calls"] if "--topic" in c}
    avro_dir = tempfile.mkdtemp(prefix="compose-avro-")
    shutil.copy(os.path.join(ROOT, "examples", "shop", "orders-avro.ndjson"), avro_dir)
    shutil.copy(os.path.join(ROOT, "schemas", "avro", "shop-order.avsc"), avro_dir)
    arc, aout, atext = run_script_with_stand_ins(script("avro-producer"), avro_dir)
    shutil.rmtree(avro_dir, ignore_errors=True)
    avro_calls = [c for c in aout["calls"] if c.startswith("kafka-avro-console-producer")]
    avro_topics = {shlex.split(c)[shlex.split(c).index("--topic") + 1] for c in avro_calls}
    C.check(rc == 0 and arc == 0 and topics | avro_topics == stream_topics,
            f"the producers' scripts run and write to {sorted(stream_topics)}", (text + atext)[-500:])
    avro_stream = [s for s in policy["streams"].values() if s.get("format") == "avro"]
    C.check(avro_calls and all("shop-order.avsc" in c.split("value.schema.file=")[-1] and "schema.registry.url=http://schema-registry:8081" in c for c in avro_calls)
            and {s["topic"] for s in avro_stream} == avro_topics,
            "the Avro producer writes the Avro stream with the example schema through the stack's registry", "\n".join(avro_calls))
    avro_orders = [l for l in read(os.path.join(ROOT, "examples", "shop", "orders-avro.ndjson")).splitlines() if l.strip()]
    C.check(len(aout["records"]) == len(avro_orders) and all(json.loads(l)["created_at"] > 1_700_000_000_000 for l in aout["records"])
            and aout["records"] != avro_orders, f"the Avro producer sends every example Avro order, stamped now ({len(aout['records'])})")
    orders = [l for l in read(os.path.join(ROOT, "examples", "shop", "orders.ndjson")).splitlines() if l.strip()]
    C.check(len(out["records"]) == len(orders), f"the producer sends every example order ({len(out['records'])})")
    stamped = [json.loads(l)["created_at"] for l in out["records"] if l.startswith("{\"order_id\":\"o-1")]
    C.check(stamped and all(s != o for s, o in zip(stamped, [json.loads(l)["created_at"] for l in orders if l.startswith("{\"order_id\":\"o-1")])),
            "the producer stamps orders with the current time (o-0999 stays old)")

    # Prometheus: the scrape job and the rules.
    pr = services["prometheus"]
    pcfg_src = mount_of("prometheus", "/etc/prometheus/prometheus.yml")
    C.check(pcfg_src == "examples/compose/prometheus.yml", "Prometheus' config is examples/compose/prometheus.yml")
    pcfg = yaml.safe_load(read(os.path.join(ROOT, pcfg_src)))
    job = [j for j in pcfg["scrape_configs"] if j["job_name"] == "custos"]
    targets = [t for j in job for sc in j.get("static_configs", []) for t in sc["targets"]]
    C.check(targets == [f"custos:{port}"] and job[0].get("metrics_path", "/metrics") == "/metrics",
            f"Prometheus scrapes job \"custos\" at custos:{port}/metrics ({targets})")
    rule_targets = pcfg.get("rule_files", [])
    rules_src = [mount_of("prometheus", t) for t in rule_targets]
    C.check(rules_src == ["helm/custos/rules/custos.rules.yml"], "Prometheus loads helm/custos/rules/custos.rules.yml (the chart's rules)")
    tmp = tempfile.mkdtemp(prefix="promcfg-")
    try:
        local = copy.deepcopy(pcfg)
        local["rule_files"] = [RULES]
        p = os.path.join(tmp, "prometheus.yml")
        with open(p, "w") as f:
            yaml.safe_dump(local, f)
        r = run(["promtool", "check", "config", p], timeout=60)
        C.check(r.returncode == 0, "promtool check config accepts the compose Prometheus config", r.stdout[-800:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Grafana: data source and dashboard provisioning.
    ds_dir = mount_of("grafana", "/etc/grafana/provisioning/datasources")
    db_dir = mount_of("grafana", "/etc/grafana/provisioning/dashboards")
    ds = [yaml.safe_load(read(os.path.join(ROOT, ds_dir, f))) for f in os.listdir(os.path.join(ROOT, ds_dir))]
    prom_ds = [d for doc in ds for d in doc.get("datasources", []) if d.get("type") == "prometheus"]
    C.check(len(prom_ds) == 1 and prom_ds[0]["url"] == "http://prometheus:9090" and prom_ds[0].get("isDefault"),
            "Grafana's default data source is the compose Prometheus")
    providers = [p for f in os.listdir(os.path.join(ROOT, db_dir)) for p in yaml.safe_load(read(os.path.join(ROOT, db_dir, f)))["providers"]]
    paths = [p["options"]["path"] for p in providers]
    dash_mounts = [(s, t) for n, s, t in mounts if n == "grafana" and t.endswith(".json")]
    C.check(len(dash_mounts) == 1 and os.path.samefile(dash_mounts[0][0], DASHBOARD)
            and os.path.dirname(dash_mounts[0][1]) in paths,
            "Grafana provisions helm/custos/dashboards/custos-governance.json (the chart's dashboard)")
    home = services["grafana"].get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    C.check(home == (dash_mounts[0][1] if dash_mounts else None), "the governance dashboard is Grafana's home dashboard")


# ----------------------------------------------------------- rules, dashboard

def check_rules_and_dashboard():
    C.start("alert rules (promtool) and dashboard")
    r = run(["promtool", "check", "rules", RULES], timeout=60)
    C.check(r.returncode == 0, "promtool check rules helm/custos/rules/custos.rules.yml", r.stdout[-1500:])
    r = run(["promtool", "test", "rules", RULES_TEST], timeout=120)
    C.check(r.returncode == 0, "promtool test rules tests/deploy/custos.rules.test.yml", r.stdout[-3000:])
    rules = yaml.safe_load(read(RULES))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for needed in ("CustosDeadLettersRising", "CustosConsumerLagGrowing", "CustosProduceFailuresStuck",
                   "CustosRestarted", "CustosNotReady", "CustosNotConsuming", "CustosDown"):
        C.check(needed in alerts, f"alert {needed} exists")
    tests = read(RULES_TEST)
    untested = [a for a in alerts if f"alertname: {a}" not in tests]
    C.check(not untested, "every alert has a promtool unit test", f"untested: {untested}")
    docs = read(os.path.join(ROOT, "docs", "deployment.md")) if os.path.exists(os.path.join(ROOT, "docs", "deployment.md")) else ""
    for a, rule in alerts.items():
        anchor = rule.get("annotations", {}).get("runbook", "").split("#")[-1]
        C.check(anchor == a.lower() and re.search(rf"^#+ .*{a}", docs, re.M) is not None,
                f"{a}: its runbook annotation points at a section of docs/deployment.md")
        C.check({"severity"} <= set(rule.get("labels", {})) and {"summary", "description"} <= set(rule.get("annotations", {})),
                f"{a}: severity, summary and description")

    dash = json.loads(read(DASHBOARD))
    C.check(dash.get("uid") == "custos-governance" and dash.get("title"), "dashboard has a stable uid and a title")
    C.check(any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in dash["templating"]["list"]),
            "dashboard has a Prometheus data-source variable (works with any data-source name)")
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    exprs = []
    for p in panels:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    wrong_ds = [p["title"] for p in panels if p.get("datasource", {}).get("uid") != "${datasource}"]
    C.check(not wrong_ds, f"every panel ({len(panels)}) uses the data-source variable", f"{wrong_ds}")
    # PromQL syntax: promtool parses each query as a recording rule.
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m", "$namespace": ".*", "$stream": ".*"}
    rec = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (title, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        C.check("$" not in e, f"query of \"{title}\" uses only known Grafana variables")
        rec["groups"][0]["rules"].append({"record": f"dashboard:query_{i}", "expr": e})
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
    yaml.safe_dump(rec, tmp)
    tmp.close()
    try:
        r = run(["promtool", "check", "rules", tmp.name], timeout=60)
        C.check(r.returncode == 0, f"every dashboard query ({len(exprs)}) parses as PromQL (promtool)", r.stdout[-1500:])
    finally:
        os.unlink(tmp.name)
    defined = telemetry_metrics()
    used = set()
    for _, e in exprs:
        used |= set(re.findall(r"\b(custos_[a-z_]+)", e))
    for r_ in alerts.values():
        used |= set(re.findall(r"\b(custos_[a-z_]+)", r_["expr"]))
    unknown = sorted(used - defined)
    C.check(not unknown, f"every custos metric the dashboard and rules use ({len(used)}) is defined in src/telemetry.rs",
            f"unknown: {unknown}")
    wanted = {"custos_records_emitted_total", "custos_records_suppressed_total", "custos_field_actions_total",
              "custos_detections_total", "custos_class_occurrences_total", "custos_records_dead_lettered_total",
              "custos_consumer_lag_records", "custos_audit_records_total"}
    C.check(wanted <= {m for _, e in exprs for m in re.findall(r"\b(custos_[a-z_]+)", e)},
            "the dashboard shows emitted, suppressed, field actions, detections, classes, dead letters, lag and audit")


# ---------------------------------------------------------------------- helm

def load_values(name):
    with open(os.path.join(VALUES_DIR, name)) as f:
        return yaml.safe_load(f) or {}


def docs_of(rendered):
    out = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                out.append((path, d))
    return out


def labels_match(selector, labels):
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, k = e["operator"], e["key"]
        if op == "DoesNotExist" and k in labels or op == "Exists" and k not in labels:
            return False
        if op == "In" and labels.get(k) not in e["values"] or op == "NotIn" and labels.get(k) in e["values"]:
            return False
    return True


def check_helm(binary):
    import helm_python
    import kubernetes_validate

    C.start("helm/custos (helm-python-sdk, kubernetes-validate)")
    lint = helm_python.lint(CHART, strict=True, namespace="governance")
    problems = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + lint.get("errors", [])
    C.check(not problems, "helm lint --strict: no warnings or errors", json.dumps(problems)[:1500])
    chart = helm_python.Chart.load(CHART)
    values = yaml.safe_load(read(os.path.join(CHART, "values.yaml")))
    C.check(values["policy"] == read(SHOP_POLICY), "the default policy value is examples/shop/policy.yaml")
    readme = read(os.path.join(CHART, "README.md"))

    def leaves(d, prefix=""):
        for k, v in d.items():
            p = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict) and v and k not in ("properties", "resources", "podSecurityContext", "securityContext"):
                yield from leaves(v, p)
            else:
                yield p
    undocumented = [p for p in leaves(values) if f"`{p}`" not in readme]
    C.check(not undocumented, f"the chart README documents every value ({len(list(leaves(values)))})", f"missing: {undocumented}")

    sets = {"default": {}}
    for f in sorted(os.listdir(VALUES_DIR)):
        if not f.startswith("bad-"):
            sets[f[:-5]] = load_values(f)
    C.check({"exactly-once", "existing-secret", "all-off"} <= set(sets), f"value sets: {sorted(sets)}")
    tmp = tempfile.mkdtemp(prefix="chart-")
    try:
        for name, vals in sets.items():
            check_rendered(chart, name, vals, binary, kubernetes_validate, tmp)
        # A policy change rolls the pods: the checksum annotation changes.
        a = sts_of(chart.render({}, name="custos", namespace="governance"))
        b = sts_of(chart.render({"policy": values["policy"] + "\n# changed\n"}, name="custos", namespace="governance"))
        ca = a["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        cb = b["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        C.check(ca != cb, "a policy change changes the pods' checksum/config annotation (pods roll)")
        c = sts_of(chart.render({"secrets": {"values": {"CUSTOS_AUDIT_KEY": "x" * 32}}}, name="custos", namespace="governance"))
        C.check(c["spec"]["template"]["metadata"]["annotations"].get("checksum/secret")
                != a["spec"]["template"]["metadata"]["annotations"].get("checksum/secret"),
                "a key change in secrets.values changes checksum/secret (pods roll)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Bad value sets are refused, each with a message naming the problem.
    bad_cases = [
        ("bad-schema.yaml", ["guarantee", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "bogus"]),
        ("bad-replicas.yaml", ["maxReplicas (8) is larger than partitions (3)"]),
        ("bad-grace.yaml", ["terminationGracePeriodSeconds (10)"]),
    ]
    inline = [
        ({"config": {"audit": {"level": "everything"}}}, ["level"]),
        ({"config": {"audit": {"summary_interval_ms": 5}}}, ["summary_interval_ms"]),
        ({"config": {"kafka": {"properties": {"enable.auto.commit": "true"}}}}, ["enable.auto.commit"]),
        ({"securityContext": {"capabilities": {"drop": []}}}, ["drop"]),
        ({"podSecurityContext": {"runAsNonRoot": False}}, ["runAsNonRoot"]),
        ({"secrets": {"values": {"CUSTOS_AUDIT_KEY": "short"}}}, ["CUSTOS_AUDIT_KEY"]),
        ({"replicaCount": 4}, ["replicaCount (4) is larger than partitions (3)"]),
        ({"secrets": {"existingSecret": "k", "values": {"CUSTOS_AUDIT_KEY": "x" * 20}}}, ["not both"]),
    ]
    cases = [(f, load_values(f), words) for f, words in bad_cases] + [(json.dumps(v), v, w) for v, w in inline]
    C.check(all(os.path.exists(os.path.join(VALUES_DIR, f)) for f, _ in bad_cases), "bad value sets exist")
    for label, vals, words in cases:
        try:
            chart.render(vals, name="custos", namespace="governance")
            C.check(False, f"refused: {label}", "rendered without an error")
        except (helm_python.HelmValuesError, helm_python.HelmRenderError) as e:
            msg = str(e)
            missing = [w for w in words if w not in msg]
            C.check(not missing, f"refused: {label} ({type(e).__name__})", f"message lacks {missing}: {msg[:600]}")
    try:
        chart.validate_schema(load_values("bad-schema.yaml"))
        C.check(False, "values.schema.json refuses bad-schema.yaml (validate_schema)")
    except helm_python.HelmValuesError:
        C.check(True, "values.schema.json refuses bad-schema.yaml (validate_schema)")


def sts_of(rendered):
    return next(d for _, d in docs_of(rendered) if d.get("kind") == "StatefulSet")


def check_rendered(chart, name, vals, binary, kv, tmp):
    import helm_python

    print(f"-- value set {name}", flush=True)
    try:
        rendered = chart.render(vals, name="custos", namespace="governance")
    except helm_python.HelmError as e:
        C.check(False, f"[{name}] renders", str(e)[:1000])
        return
    docs = docs_of(rendered)
    kinds = [d["kind"] for _, d in docs]
    C.check(True, f"[{name}] renders: {', '.join(sorted(kinds))}")
    crd_kinds = {"ServiceMonitor", "PrometheusRule"}
    for path, d in docs:
        if d["kind"] in crd_kinds:
            continue
        for ver in KUBE_VERSIONS:
            try:
                kv.validate(d, ver, strict=True)
                ok, msg = True, ""
            except kv.ValidationError as e:
                ok, msg = False, str(e)[:800]
            except Exception as e:  # schema not found etc.
                ok, msg = False, f"{type(e).__name__}: {e}"[:800]
            C.check(ok, f"[{name}] {d['kind']} {d['metadata']['name']} is valid Kubernetes {ver} (strict)", msg)
        C.check(d["metadata"].get("namespace") in (None, "governance"), f"[{name}] {d['kind']} is in the release namespace")
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    C.check("Deployment" not in by_kind and len(by_kind.get("StatefulSet", [])) == 1, f"[{name}] one StatefulSet, no Deployment")
    sts = by_kind["StatefulSet"][0]
    pod = sts["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    env = {e["name"]: e for e in ctr.get("env", [])}
    C.check(env.get("CUSTOS_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
            f"[{name}] CUSTOS_INSTANCE_ID is the pod name (stable transactional.id)")
    C.check(ctr["readinessProbe"]["httpGet"]["path"] == "/readyz" and ctr["livenessProbe"]["httpGet"]["path"] == "/healthz",
            f"[{name}] readiness on /readyz, liveness on /healthz")
    sc = ctr["securityContext"]
    C.check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"] and pod["securityContext"].get("runAsNonRoot") is True,
            f"[{name}] non-root, read-only root fs, no privilege escalation, all capabilities dropped")
    C.check(bool(ctr.get("resources", {}).get("requests")), f"[{name}] resource requests set")
    C.check("checksum/config" in sts["spec"]["template"]["metadata"]["annotations"], f"[{name}] checksum/config annotation")
    svc_names = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
    C.check(sts["spec"]["serviceName"] in svc_names, f"[{name}] the StatefulSet's serviceName is a rendered Service")
    # Secret wiring.
    secret_ref = [e["secretRef"]["name"] for e in ctr.get("envFrom", []) if "secretRef" in e]
    existing = vals.get("secrets", {}).get("existingSecret")
    secrets = {s["metadata"]["name"] for s in by_kind.get("Secret", [])}
    if existing:
        C.check(secret_ref == [existing] and not secrets, f"[{name}] keys come from existingSecret {existing}; no Secret rendered")
    elif vals.get("secrets", {}).get("create") is False:
        C.check(not secrets, f"[{name}] no Secret rendered (secrets.create false)")
    else:
        C.check(secret_ref and secret_ref[0] in secrets, f"[{name}] keys come from the rendered Secret {secret_ref}")
    # The config the pods read loads in the real custos; the policy passes policy check.
    cm = next(c for c in by_kind["ConfigMap"] if "custos.toml" in c.get("data", {}))
    vol = next(v for v in pod["volumes"] if v["name"] == "config")
    C.check(vol["configMap"]["name"] == cm["metadata"]["name"], f"[{name}] the pods mount the config ConfigMap")
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "config")
    C.check(ctr["args"] == ["run", "--config", mount["mountPath"] + "/custos.toml"], f"[{name}] custos runs with the mounted config")
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    for k, v in cm["data"].items():
        with open(os.path.join(d, k), "w") as f:
            f.write(v)
    toml = tomllib.loads(cm["data"]["custos.toml"])
    port = int(toml["http"]["listen"].rsplit(":", 1)[1])
    C.check(ctr["ports"][0]["containerPort"] == port, f"[{name}] the container port is custos's http.listen port ({port})")
    want_guarantee = vals.get("config", {}).get("delivery", {}).get("guarantee", "at_least_once")
    C.check(toml["delivery"]["guarantee"] == want_guarantee, f"[{name}] delivery.guarantee = {want_guarantee}")
    if binary:
        custos_loads_config(binary, os.path.join(d, "custos.toml"), f"[{name}] the rendered custos.toml")
        custos_policy_check(binary, os.path.join(d, "policy.yaml"), f"[{name}] the rendered policy")
    # HPA never above the partition count.
    partitions = vals.get("partitions", 3)
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        C.check(h["spec"]["maxReplicas"] <= partitions and h["spec"]["scaleTargetRef"]["kind"] == "StatefulSet",
                f"[{name}] HPA scales the StatefulSet up to {h['spec']['maxReplicas']} <= partitions ({partitions})")
    if "replicas" in sts["spec"]:
        C.check(sts["spec"]["replicas"] <= partitions, f"[{name}] replicas <= partitions")
    for p in by_kind.get("PodDisruptionBudget", []):
        C.check(labels_match(p["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]),
                f"[{name}] the PodDisruptionBudget selects the pods")
    for n in by_kind.get("NetworkPolicy", []):
        C.check(labels_match(n["spec"]["podSelector"], sts["spec"]["template"]["metadata"]["labels"])
                and set(n["spec"]["policyTypes"]) == {"Ingress", "Egress"},
                f"[{name}] the NetworkPolicy selects the pods, ingress and egress")
    # Prometheus Operator objects: structure.
    services = by_kind.get("Service", [])
    for sm in by_kind.get("ServiceMonitor", []):
        ok = sm["apiVersion"] == "monitoring.coreos.com/v1" and isinstance(sm["spec"].get("endpoints"), list)
        selected = [s for s in services if labels_match(sm["spec"]["selector"], s["metadata"]["labels"])]
        eps = sm["spec"]["endpoints"]
        port_names = {p["name"] for s in selected for p in s["spec"]["ports"]}
        job = [r.get("replacement") for e in eps for r in e.get("relabelings", []) if r.get("targetLabel") == "job"]
        C.check(ok and len(selected) == 1 and selected[0]["spec"].get("clusterIP") != "None",
                f"[{name}] ServiceMonitor selects exactly the metrics Service (not the headless one)")
        C.check(all(e["port"] in port_names and e.get("path") == "/metrics" for e in eps),
                f"[{name}] ServiceMonitor scrapes a named Service port at /metrics")
        C.check(job == ["custos"], f"[{name}] ServiceMonitor sets job=\"custos\" (what the rules and dashboard select)")
        C.check(sm["spec"].get("namespaceSelector", {}).get("matchNames") == ["governance"], f"[{name}] ServiceMonitor looks in the release namespace")
        C.check(all(re.match(r"^[0-9]+(ms|s|m|h)$", e.get("interval", "30s")) for e in eps), f"[{name}] ServiceMonitor interval is a duration")
    for pr in by_kind.get("PrometheusRule", []):
        source = yaml.safe_load(read(RULES))
        C.check(pr["apiVersion"] == "monitoring.coreos.com/v1" and pr["spec"]["groups"] == source["groups"],
                f"[{name}] PrometheusRule groups are exactly helm/custos/rules/custos.rules.yml")
        ok = all(set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"} and "expr" in r
                 and ("alert" in r) != ("record" in r) for g in pr["spec"]["groups"] for r in g["rules"])
        C.check(ok, f"[{name}] PrometheusRule rules have the operator's fields only")
    dash_cms = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"].endswith("-dashboard")]
    for c in dash_cms:
        C.check(c["metadata"]["labels"].get("grafana_dashboard") == "1", f"[{name}] dashboard ConfigMap carries the sidecar label grafana_dashboard")
        C.check(json.loads(c["data"]["custos-governance.json"]) == json.loads(read(DASHBOARD)),
                f"[{name}] dashboard ConfigMap holds helm/custos/dashboards/custos-governance.json")
    if name == "all-off":
        off = {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Secret", "ServiceAccount"}
        C.check(not (off & set(by_kind)) and not dash_cms, f"[{name}] every optional object is off", f"{sorted(off & set(by_kind))}")
        C.check(pod.get("serviceAccountName") == "default", f"[{name}] pods use the namespace's default ServiceAccount")
    if name == "default":
        want = {"StatefulSet", "Service", "ConfigMap", "Secret", "ServiceAccount", "ServiceMonitor", "PrometheusRule",
                "PodDisruptionBudget", "NetworkPolicy"}
        C.check(want <= set(by_kind), f"[{name}] renders {sorted(want)}", f"missing {sorted(want - set(by_kind))}")
    if name == "exactly-once":
        C.check(toml["kafka"]["properties"].get("security.protocol") == "SASL_SSL" and toml["kafka"]["properties"].get("linger.ms") == "10",
                f"[{name}] kafka.properties are written as strings")
        C.check(sts["spec"]["replicas"] == 3 and pod["terminationGracePeriodSeconds"] * 1000 > toml["delivery"]["drain_timeout_ms"],
                f"[{name}] 3 replicas, grace period longer than the drain")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", os.path.join(ROOT, "target", "debug", "custos")),
                    help="custos binary that loads the configs and policies")
    ap.add_argument("--only", choices=["dockerfile", "compose", "rules", "helm"], action="append")
    args = ap.parse_args()
    binary = args.bin if os.path.exists(args.bin) else None
    if not binary:
        print(f"check_deploy: no custos binary at {args.bin} (--bin)", file=sys.stderr)
        return 2
    only = set(args.only or ["dockerfile", "compose", "rules", "helm"])
    steps = [("dockerfile", check_dockerfile), ("compose", lambda: check_compose(binary)),
             ("rules", check_rules_and_dashboard), ("helm", lambda: check_helm(binary))]
    for key, fn in steps:
        if key in only:
            try:
                fn()
            except Exception as e:  # a crash in one section is a failure, the rest still runs
                import traceback

                traceback.print_exc()
                C.check(False, f"{key} checks ran to the end", f"{type(e).__name__}: {e}")
    print(f"deploy: {C.passed} passed, {C.failed} failed")
    return 0 if C.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
