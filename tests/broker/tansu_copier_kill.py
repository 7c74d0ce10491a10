#!/usr/bin/env python3
"""Textbook consume-transform-produce copier (confluent-kafka: read_committed
consumer, transactional producer, send_offsets_to_transaction, commit every
100 ms), SIGKILLed 3 times and restarted with the same transactional.id, as a
baseline for tests/broker/eos_kill_test.py on the same broker. Needs a running
broker with empty topics cin/cout: python3 tests/broker/tansu_copier_kill.py HOST:PORT run
(prints inputs, distinct, total, duplicates as read by a read_committed reader).
"""
# Textbook consume-transform-produce copier on tansu, killed K times.
import sys, time, subprocess, threading, collections, random
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_BEGINNING, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
bs = sys.argv[1]
if sys.argv[2] == "copy":
    c = Consumer({"bootstrap.servers": bs, "group.id": "copier", "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    p = Producer({"bootstrap.servers": bs, "transactional.id": "copier-1", "linger.ms": 5})
    p.init_transactions(30)
    c.subscribe(["cin"])
    p.begin_transaction(); last = time.time(); n = 0
    while True:
        m = c.poll(0.05)
        if m is not None and not m.error():
            p.produce("cout", key=m.key(), value=m.value(), headers=[("src", f"{m.partition()}/{m.offset()}".encode())], partition=m.partition())
            n += 1
        if time.time() - last > 0.1 and n:
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            print("committed", flush=True)
            p.begin_transaction(); last = time.time(); n = 0
admin = AdminClient({"bootstrap.servers": bs})
for f in admin.create_topics([NewTopic("cin", 3, 1), NewTopic("cout", 3, 1)]).values(): f.result(10)
N = 3000
def produce():
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    t0 = time.time()
    for i in range(N):
        d = t0 + 45 * i / N - time.time()
        if d > 0: time.sleep(d)
        p.produce("cin", key=str(i % 20), value=str(i)); p.poll(0)
    p.flush(30)
def start():
    return subprocess.Popen([sys.executable, __file__, bs, "copy"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
th = threading.Thread(target=produce); th.start()
w = start()
for k in range(3):
    while w.stdout.readline().strip() != "committed": pass
    time.sleep(random.uniform(2, 5))
    w.kill(); w.wait(); print("kill", k + 1, flush=True)
    w = start()
th.join()
time.sleep(25)
w.kill(); w.wait()
r = Consumer({"bootstrap.servers": bs, "group.id": "rd", "isolation.level": "read_committed", "enable.auto.commit": False})
r.assign([TopicPartition("cout", i, OFFSET_BEGINNING) for i in range(3)])
seen = collections.Counter(); end = time.time() + 8
while time.time() < end:
    for m in r.consume(500, 0.2):
        if not m.error(): seen[m.value()] += 1
print("inputs", N, "distinct", len(seen), "total", sum(seen.values()), "duplicates", sum(c - 1 for c in seen.values() if c > 1))
