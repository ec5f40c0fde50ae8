#!/usr/bin/env python3
"""Probe: does a Kafka-API broker rebalance a consumer group correctly when a member dies?

Three members (separate processes) join one group on a 6-partition topic; the third is
SIGKILLed; after its session timeout (6 s) the two survivors must own all 6 partitions between
them. Prints each member's assignments and a verdict; exit code 0 = correct, 1 = partitions
left orphaned. Needs confluent-kafka (the e2e venv has it).

    .venv/bin/python scripts/probes/kafka_group_rebalance.py 127.0.0.1:19092

Run against tansu 0.6.0 on 2026-12-06 (memory storage), three times: the group rebalances
after the kill, but the dead member's partitions are assigned to nobody (e.g. C held [0,1];
afterwards A=[4,5], B=[2,3], and [0,1] stayed orphaned until a survivor left 20 s later).
So OpenEG's distributed mode does not rely on Kafka group rebalancing (docs/DECISIONS.md).
"""
import os
import signal
import subprocess
import sys
import time
import uuid

MEMBER = r'''
import sys, time
from confluent_kafka import Consumer
brokers, topic, group, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 1000, "enable.auto.commit": False})
own = set()
def on_assign(c, parts):
    own.clear(); own.update(p.partition for p in parts)
    print(time.time(), "assigned", sorted(own), flush=True)
def on_revoke(c, parts):
    own.clear(); print(time.time(), "revoked []", flush=True)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
end = time.time() + secs
while time.time() < end:
    c.poll(0.2)
c.close()
'''


def main():
    brokers = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
    from confluent_kafka.admin import AdminClient, NewTopic
    topic, group = f"probe-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    a = AdminClient({"bootstrap.servers": brokers})
    for f in a.create_topics([NewTopic(topic, 6, 1)]).values():
        f.result(30)
    procs = {}
    for name, secs in (("A", 45), ("B", 45), ("C", 300)):
        procs[name] = subprocess.Popen([sys.executable, "-c", MEMBER, brokers, topic, group,
                                        str(secs)], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
    time.sleep(10)
    os.kill(procs["C"].pid, signal.SIGKILL)
    checkpoint = time.time() + 20       # well past the 6 s session timeout; A and B still run
    print("C killed; ownership checked 20 s later", flush=True)
    owned = []
    for name in ("A", "B"):
        out, _ = procs[name].communicate(timeout=120)
        print(f"--- {name}\n{out}", end="")
        own = []
        for line in out.splitlines():
            t, _, parts = line.split(" ", 2)
            if float(t) <= checkpoint:
                own = eval(parts)
        owned += own
    procs["C"].wait()
    ok = sorted(owned) == list(range(6))
    print("verdict:", "the survivors own the 6 partitions once each" if ok
          else f"owned at the checkpoint: {sorted(owned)} (want 0-5 once each)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
