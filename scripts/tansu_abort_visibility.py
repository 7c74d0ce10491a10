import sys, time, subprocess
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic
bs = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "child":
    p = Producer({"bootstrap.servers": bs, "transactional.id": sys.argv[3], "linger.ms": 5})
    p.init_transactions(30); p.begin_transaction()
    for i in range(3): p.produce("v", value=sys.argv[4], partition=i)
    p.flush(10); print("produced", flush=True); time.sleep(60)
admin = AdminClient({"bootstrap.servers": bs})
for f in admin.create_topics([NewTopic("v", 3, 1)]).values(): f.result(10)
def count(tag):
    r = Consumer({"bootstrap.servers": bs, "group.id": "r"+tag+str(time.time()), "isolation.level": "read_committed", "enable.auto.commit": False})
    r.assign([TopicPartition("v", i, OFFSET_BEGINNING) for i in range(3)])
    c = {}; end = time.time() + 2.5
    while time.time() < end:
        for m in r.consume(100, 0.2):
            if not m.error(): c[m.value().decode()] = c.get(m.value().decode(), 0) + 1
    r.close(); return c
p = Producer({"bootstrap.servers": bs, "transactional.id": "t1", "linger.ms": 5})
p.init_transactions(30); p.begin_transaction()
for i in range(3): p.produce("v", value="open", partition=i)
p.flush(10)
print("open txn, not committed:", count("a"))
p.abort_transaction(30)
print("after explicit abort:", count("b"))
p.begin_transaction()
for i in range(3): p.produce("v", value="committed", partition=i)
p.commit_transaction(30)
print("after a commit:", count("c"))
# killed producer, never re-initialised
ch = subprocess.Popen([sys.executable, __file__, bs, "child", "t2", "killed-no-reinit"], stdout=subprocess.PIPE, text=True)
ch.stdout.readline(); ch.kill(); ch.wait()
print("killed producer (t2), no new init:", count("d"))
ch = subprocess.Popen([sys.executable, __file__, bs, "child", "t3", "killed-then-reinit"], stdout=subprocess.PIPE, text=True)
ch.stdout.readline(); ch.kill(); ch.wait()
print("killed producer (t3), before re-init:", count("e"))
q = Producer({"bootstrap.servers": bs, "transactional.id": "t3"}); q.init_transactions(30)
print("killed producer (t3), after re-init by same id:", count("f"))
q.begin_transaction(); q.produce("v", value="t3-after", partition=0); q.commit_transaction(30)
print("after t3's next commit:", count("g"))
