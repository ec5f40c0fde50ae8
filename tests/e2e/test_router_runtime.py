"""Event-router jobs that copy (issue #16), through the signed API (the SDK has no
event-router operations), between two real Kafka-API brokers: the source is the broker of
`OPENEG_TEST_KAFKA_BROKERS` (tansu in CI), the sink a private tansu process.

* Two topics × 3 partitions, keyed records with headers: one mapped to another name, one
  renamed to `{cluster_alias}.{topic}` (the job creates it); every target partition holds its
  source partition's records in order, with key, value and headers, through a SIGKILL of
  OpenEG mid-copy. syncDetail reaches 0 remaining, filters by topic and pages. STOP stops.

Skipped without the variable unless OPENEG_REQUIRE_KAFKA=1.
"""
from __future__ import annotations

import os
import threading

import pytest

from dataplane import DataServer, wait_until
from eglib import uniq
from test_brokers import Tansu, create_topic, kafka_brokers
from test_router_jobs import CLUSTERS, JOBS, cluster_body, job_body, kafka_ep

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")

PARTITIONS = 3


def produce(brokers: str, topic: str, start: int, end: int):
    """Records start..end: partition i % 3, key k-{i}, value v-{i}, header h = i."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 100, "batch.num.messages": 10000})
    for i in range(start, end):
        p.produce(topic, f"v-{i}".encode(), key=f"k-{i}".encode(), partition=i % PARTITIONS,
                  headers=[("h", str(i).encode())])
        p.poll(0)
    assert p.flush(60) == 0


def read_all(brokers: str, topic: str) -> dict[int, list]:
    """Every record of `topic` up to its high watermarks: {partition: [(offset, key, value,
    headers)]} in offset order."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": uniq("e2e-read"),
                  "enable.auto.commit": False})
    try:
        meta = wait_until(lambda: (lambda t: t if t and t.partitions else None)(
            c.list_topics(topic, timeout=10).topics.get(topic)), 60, f"metadata of {topic}")
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                 for p in meta.partitions}
        c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: dict[int, list] = {p: [] for p in meta.partitions}

        def done():
            return all(h == 0 or (out[p] and out[p][-1][0] + 1 >= h) for p, h in highs.items())
        import time
        deadline = time.monotonic() + 240
        while not done():
            assert time.monotonic() < deadline, f"{topic} not read in time"
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                out[m.partition()].append((m.offset(), m.key(), m.value(),
                                           list(m.headers() or [])))
        return out
    finally:
        c.close()


def copies_match(src_brokers, src, dst_brokers, dst) -> int:
    """Each target partition, copies made twice dropped (by eg-origin-offset), equals its
    source partition; returns the number of duplicates."""
    source, target = read_all(src_brokers, src), read_all(dst_brokers, dst)
    dups = 0
    for p, recs in source.items():
        seen, copies = -1, []
        for (_, k, v, h) in target[p]:
            hd = dict(h)
            o = int(hd["eg-origin-offset"])
            assert hd["eg-origin-topic"] == src.encode() and hd["eg-origin-partition"] == str(
                p).encode()
            if o > seen:
                seen = o
                copies.append((o, k, v, [x for x in h if not x[0].startswith("eg-origin-")]))
            else:
                dups += 1
        assert [c[0] for c in copies] == [r[0] for r in recs], f"{dst}/{p}: offsets"
        assert [c[1:] for c in copies] == [r[1:] for r in recs], f"{dst}/{p}: content"
    return dups


def sync_detail(raw, jid, **body):
    r = raw.call("POST", f"{JOBS}/{jid}/syncDetail", body={"offset": 0, "limit": 10, **body})
    assert r.status == 200, r
    return r.json()


def test_kafka_to_kafka_job_copies_maps_and_reports_sync_detail():
    brokers = kafka_brokers()
    sink = Tansu()
    srv = DataServer()
    alias = uniq("dr").replace("-", "")
    t1, t2 = uniq("e2e-rj1"), uniq("e2e-rj2")
    mapped, renamed = uniq("e2e-rj1-copy"), f"{alias}.{t2}"
    n = 5_000
    try:
        sink.start()
        for t in (t1, t2):
            create_topic(brokers, t, PARTITIONS)
        for t in (t1, t2):
            produce(brokers, t, 0, n // 2)
        srv.start()
        raw = srv.raw()
        r = raw.call("POST", CLUSTERS, body=cluster_body())
        assert r.status == 200, r
        cid = r.json()["cluster_id"]
        r = raw.call("POST", JOBS, body=job_body(
            cid,
            source_config=[{"source_kafka": [kafka_ep(brokers, cluster_alias=alias)]}],
            sink_config=[{"sink_kafka": [kafka_ep(sink.addr, cluster_alias="backup")]}],
            advance_config=[{"kafka2kafka": [{
                "topics": f"{t1},{t2}", "topic_regex": "", "task_cnt": None,
                "topic_mappings": [{"source_topic": t1, "sink_topic": mapped}],
                "rename_topic": True, "is_add_header": True, "is_sync_progress": False,
                "replica_cnt": 1, "seek_to": "earliest", "compress_alg": "gzip"}]}]))
        assert r.status == 200, r
        jid = r.json()["job_id"]
        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "START"})
        assert r.status == 200, r

        def job():
            return raw.call("GET", f"{JOBS}/{jid}").json()
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING", srv)
        j = job()
        assert (j["source_status"], j["sink_status"]) == ("NORMAL", "NORMAL"), j

        # The rest arrives while OpenEG is SIGKILLed once mid-copy.
        producer = threading.Thread(target=lambda: [produce(brokers, t, n // 2, n)
                                                    for t in (t1, t2)])
        producer.start()
        wait_until(lambda: sync_detail(raw, jid).get("items"), 30, "figures", srv)
        srv.kill()
        srv.start()
        producer.join(120)
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING after the restart", srv)

        def caught_up():
            d = sync_detail(raw, jid)
            items = d.get("items") or []
            offsets = [o["offset"] for i in items for o in i["offset_details"]]
            return d if (len(items) == 2 and d["metadata"]["sync_remain_total"] == 0
                         and sum(o["offset"] for o in offsets) == 2 * n) else None
        d = wait_until(caught_up, 240, "syncDetail to reach 0 remaining", srv, interval=1)
        assert d["type"] == "KAFKA" and d["total"] == 2 and d["size"] == 2, d
        assert [i["topic"] for i in d["items"]] == sorted([t1, t2])
        for item in d["items"]:
            assert item["number"] == PARTITIONS and item["sync_remain_num"] == 0, item
            for od in item["offset_details"]:
                assert od["partition"]["cluter"] == alias and od["partition"]["topic"] == item[
                    "topic"]
                assert od["offset"]["offset"] == od["offset"]["max_offset"], od
        # Filters and paging.
        eq = sync_detail(raw, jid, conditions=[{"key": "topic", "operate": "EQUAL",
                                                "value": t1}])
        assert [i["topic"] for i in eq["items"]] == [t1] and eq["total"] == 1, eq
        like = sync_detail(raw, jid, conditions=[{"key": "topic", "operate": "LIKE",
                                                  "value": t2[-8:].upper()}])
        assert [i["topic"] for i in like["items"]] == [t2], like
        page = sync_detail(raw, jid, offset=1, limit=10)
        assert (page["total"], page["size"]) == (2, 1), page
        assert page["metadata"]["sync_remain_total"] == 0

        # Every record, in order per partition, with key, value and headers.
        dups = copies_match(brokers, t1, sink.addr, mapped) + copies_match(
            brokers, t2, sink.addr, renamed)
        # At most what was copied and not committed at the kill: a batch per partition.
        assert dups <= 2 * PARTITIONS * 1000, dups

        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "STOP"})
        assert r.status == 200, r
        assert job()["status"] == "STOPPED"
        d = sync_detail(raw, jid)
        assert d["state"] == "NOT_RUNNING" and d["items"] == [], d
    finally:
        srv.stop()
        sink.stop()


def test_kafka_job_validation_sends_a_metadata_request(raw_a):
    """ValidateEventRouterJob on Kafka endpoints: past the TCP connect, a metadata request with
    the security protocol given. The test broker answers PLAINTEXT; asked for SASL it does
    not authenticate, and the check fails with the reason (never echoing the password)."""
    brokers = kafka_brokers()
    r = raw_a.call("POST", CLUSTERS, body=cluster_body())
    assert r.status == 200, r
    cid = r.json()["cluster_id"]
    r = raw_a.call("POST", JOBS + "/validation", body={
        "cluster_id": cid, "source_config": {"source_kafka": kafka_ep(brokers)},
        "sink_config": {"sink_kafka": kafka_ep(
            brokers, authenticate_mode="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
            user_name="u", password="kafka-secret-pw")}})
    assert r.status == 200, r
    res = {x["check_item_name"]: x for x in r.json()["results"]}
    assert res["SOURCE_NETWORK"]["status"] == "SUCCESS", res
    assert res["SINK_NETWORK"]["status"] == "FAILED", res
    assert "Kafka check" in res["SINK_NETWORK"]["reason"], res
    assert b"kafka-secret-pw" not in r.body
