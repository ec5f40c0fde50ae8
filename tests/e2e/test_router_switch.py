"""Switch-over of event-router jobs (issue #16): ExecuteEventRouterJobOperation with
`config.sink_address` equal to the job's source address swaps source and sink, and the job
then copies the other way, through the signed API against real brokers.

* Kafka (the shared test broker and a private tansu): a renamed topic is copied; after the
  switch the job reads the copy and writes into the original, starting after its own copies
  (none goes back); records written to the copy arrive in the original; switched back, new
  records go forward again and the copied-back ones do not return. `switch_now` false refuses
  a job that is not running; an address that is neither side is refused.
* RocketMQ (the two rocketmq-rust clusters): the same round trip, counted by queue offsets.

Skipped without the brokers' variables unless OPENEG_REQUIRE_KAFKA / OPENEG_REQUIRE_ROCKETMQ.
"""
from __future__ import annotations

import os
import time

import pytest

from dataplane import DataServer, wait_until
from eglib import uniq
from test_brokers import Tansu, create_topic, kafka_brokers, rmq, rocketmq_namesrv
from test_router_jobs import CLUSTERS, JOBS, cluster_body, job_body
from test_router_rocketmq import namesrv2, rmq_ep
from test_router_runtime import PARTITIONS, kafka_job, read_all, sync_detail

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")


def produce(brokers: str, topic: str, prefix: str, n: int):
    """n records: partition i % 3, key {prefix}-{i}."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
    for i in range(n):
        p.produce(topic, f"v-{prefix}-{i}".encode(), key=f"{prefix}-{i}".encode(),
                  partition=i % PARTITIONS)
    assert p.flush(60) == 0


def keys(brokers: str, topic: str) -> dict[int, list[str]]:
    return {p: [r[1].decode() for r in recs] for p, recs in read_all(brokers, topic).items()}


def action(raw, jid, **config):
    body = {"operation": "START"}
    if config:
        body["config"] = config
    return raw.call("POST", f"{JOBS}/{jid}/action", body=body)


def caught_up(raw, jid, topic_key, count_key, want):
    """syncDetail once every row's queues/partitions are copied up to their end and the
    positions add up to `want`."""
    def check():
        d = sync_detail(raw, jid)
        rows = d.get("items") or []
        at = sum(o["offset"][count_key] for r in rows for o in r["offset_details"])
        return d if (rows and d["metadata"]["sync_remain_total"] == 0 and at == want) else None
    return check


def test_kafka_job_switches_over_and_back():
    a = kafka_brokers()
    b = Tansu()
    srv = DataServer()
    alias = uniq("sw").replace("-", "")
    topic = uniq("e2e-sw")
    copy = f"{alias}.{topic}"
    try:
        b.start()
        create_topic(a, topic, PARTITIONS)
        produce(a, topic, "a", 300)
        srv.start()
        raw = srv.raw()
        jid = kafka_job(raw, a, alias, b.addr, topics=topic)

        def job():
            return raw.call("GET", f"{JOBS}/{jid}").json()
        # Not running: how much is left is unknown, so a careful switch is refused.
        r = action(raw, jid, sink_address=a)
        assert r.status == 400 and "switch_now" in r.json()["error_msg"], r
        assert job()["source_config"]["source_kafka"]["address"] == a
        assert action(raw, jid).status == 200
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING", srv)
        wait_until(caught_up(raw, jid, "topic", "offset", 300), 120, "first copy", srv)
        # An address that is neither side is an error; the sink's own is no switch.
        r = action(raw, jid, sink_address="10.9.9.9:9092")
        assert r.status == 400, r
        assert action(raw, jid, sink_address=b.addr).status == 200
        assert job()["source_config"]["source_kafka"]["address"] == a

        # The switch: caught up, so switch_now is not needed.
        r = action(raw, jid, sink_address=a, switch_now=False)
        assert r.status == 200, r
        j = job()
        assert j["source_config"]["source_kafka"]["address"] == b.addr, j
        assert j["sink_config"]["sink_kafka"]["address"] == a, j
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING switched", srv)
        # It reads the copy from where its own copies end: nothing is left, nothing goes back.
        d = wait_until(caught_up(raw, jid, "topic", "offset", 300), 60, "switched figures",
                       srv)
        assert [i["topic"] for i in d["items"]] == [copy], d
        time.sleep(3)
        assert sum(len(v) for v in keys(a, topic).values()) == 300
        # The applications moved: what they write to the copy reaches the original.
        produce(b.addr, copy, "b", 90)
        wait_until(caught_up(raw, jid, "topic", "offset", 390), 120, "copied back", srv)
        back = keys(a, topic)
        for p in range(PARTITIONS):
            assert len(back[p]) == 130, back[p]
            assert back[p][100:] == [f"b-{i}" for i in range(p, 90, PARTITIONS)], back[p]

        # Switched back at once (switch_now): forward again, after what it copied back.
        r = action(raw, jid, sink_address=b.addr, switch_now=True)
        assert r.status == 200, r
        assert job()["source_config"]["source_kafka"]["address"] == a
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING switched back", srv)
        produce(a, topic, "c", 60)
        wait_until(caught_up(raw, jid, "topic", "offset", 450), 120, "copied forward", srv)
        time.sleep(3)
        fwd = keys(b.addr, copy)
        for p in range(PARTITIONS):
            assert fwd[p][:100] == [f"a-{i}" for i in range(p, 300, PARTITIONS)]
            assert fwd[p][100:130] == [f"b-{i}" for i in range(p, 90, PARTITIONS)]
            assert fwd[p][130:] == [f"c-{i}" for i in range(p, 60, PARTITIONS)], fwd[p]
        assert sum(len(v) for v in keys(a, topic).values()) == 450
    finally:
        srv.stop()
        b.stop()


def rmq_total(raw, jid) -> int:
    d = sync_detail(raw, jid)
    return sum(o["offset"]["max_offset"] for r in d.get("items") or []
               for o in r["offset_details"])


def test_rocketmq_job_switches_over_and_back():
    ns1, ns2 = rocketmq_namesrv(), namesrv2()
    topic = uniq("sw-rmq")
    rmq("produce", "--namesrv", ns1, "--topic", topic, "--count", "300", "--prefix", "a")
    srv = DataServer()
    try:
        srv.start()
        raw = srv.raw()
        r = raw.call("POST", CLUSTERS,
                     body=cluster_body(source_type="ROCKETMQ", sink_type="ROCKETMQ"))
        assert r.status == 200, r
        r = raw.call("POST", JOBS, body=job_body(
            r.json()["cluster_id"],
            source_config=[{"source_rocketmq": [rmq_ep(ns1)]}],
            sink_config=[{"sink_rocketmq": [rmq_ep(ns2)]}],
            advance_config=[{"rocketmq2rocketmq": [{
                "topics": topic, "topic_regex": "", "is_sync_progress": False,
                "seek_to": "first", "compress_alg": "none"}]}]))
        assert r.status == 200, r
        jid = r.json()["job_id"]

        def job():
            return raw.call("GET", f"{JOBS}/{jid}").json()
        assert action(raw, jid).status == 200
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING", srv)
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 300), 120, "first copy",
                   srv, interval=1)

        r = action(raw, jid, sink_address=ns1)
        assert r.status == 200, r
        assert job()["source_config"]["source_rocketmq"]["address"] == ns2
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING switched", srv)
        # Reading the target's copies from where they end: nothing left, nothing goes back.
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 300), 60,
                   "switched figures", srv, interval=1)
        rmq("produce", "--namesrv", ns2, "--topic", topic, "--count", "90", "--prefix", "b")
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 390), 120, "copied back",
                   srv, interval=1)

        r = action(raw, jid, sink_address=ns2, switch_now=True)
        assert r.status == 200, r
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING switched back", srv)
        # The original now holds 300 + 90: the 90 copied back are not copied forward again.
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 390), 60,
                   "switched-back figures", srv, interval=1)
        rmq("produce", "--namesrv", ns1, "--topic", topic, "--count", "60", "--prefix", "c")
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 450), 120,
                   "copied forward", srv, interval=1)
        # Switched over once more: the target holds 300 + 90 + 60, each once.
        r = action(raw, jid, sink_address=ns1, switch_now=True)
        assert r.status == 200, r
        wait_until(caught_up(raw, jid, "topic", "rocketmq_offset", 450), 60,
                   "the target's queues", srv, interval=1)
        assert rmq_total(raw, jid) == 450
    finally:
        srv.stop()
