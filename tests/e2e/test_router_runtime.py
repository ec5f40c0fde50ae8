"""Event-router jobs that copy (issue #16), through the signed API (the SDK has no
event-router operations), between two real Kafka-API brokers: the source is the broker of
`OPENEG_TEST_KAFKA_BROKERS` (tansu in CI), the sink a private tansu process.

* Two topics × 3 partitions, keyed records with headers: one mapped to another name, one
  renamed to `{cluster_alias}.{topic}` (the job creates it); every target partition holds its
  source partition's records in order, with key, value and headers, through a SIGKILL of
  OpenEG mid-copy. syncDetail reaches 0 remaining, filters by topic and pages. STOP stops.
* A topic whose partition ends with a transaction marker (appended with a raw Produce
  request) is copied with `compress_alg` zstd, and syncDetail's remaining reaches 0.

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


def kafka_job(raw, source: str, alias: str, sink: str, **k2k) -> str:
    """Creates a cluster and a Kafka→Kafka job from `source` (cluster alias `alias`) to
    `sink` (alias `backup`) with the reference's `kafka2kafka` shape, `k2k` overriding its
    members; returns the job id."""
    r = raw.call("POST", CLUSTERS, body=cluster_body())
    assert r.status == 200, r
    advance = {"topics": "", "topic_regex": "", "task_cnt": None, "topic_mappings": [],
               "rename_topic": True, "is_add_header": False, "is_sync_progress": False,
               "replica_cnt": 1, "seek_to": "earliest", "compress_alg": "none", **k2k}
    r = raw.call("POST", JOBS, body=job_body(
        r.json()["cluster_id"],
        source_config=[{"source_kafka": [kafka_ep(source, cluster_alias=alias)]}],
        sink_config=[{"sink_kafka": [kafka_ep(sink, cluster_alias="backup")]}],
        advance_config=[{"kafka2kafka": [advance]}]))
    assert r.status == 200, r
    return r.json()["job_id"]


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
        jid = kafka_job(raw, brokers, alias, sink.addr, topics=f"{t1},{t2}",
                        topic_mappings=[{"source_topic": t1, "sink_topic": mapped}],
                        is_add_header=True, compress_alg="gzip")
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


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _recv_exactly(s, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "the broker closed the connection"
        out += chunk
    return bytes(out)


def append_commit_marker(brokers: str, topic: str, partition: int = 0) -> bool:
    """Appends a transaction COMMIT marker (a control batch) to `topic`/`partition` with a raw
    Produce request: the test broker (tansu) has no transactions, but stores and serves the
    batch, and consumers skip it as they skip any marker. The partition's high watermark grows
    by one with no record to read. False when the broker refuses it (Apache Kafka does: only
    its transaction coordinator writes markers)."""
    import socket
    import struct
    import time
    key = struct.pack(">hh", 0, 1)            # version 0, type COMMIT
    value = struct.pack(">hi", 0, 0)          # version 0, coordinator epoch
    body = (b"\x00" + _varint(0) + _varint(0) + _varint(len(key)) + key
            + _varint(len(value)) + value + _varint(0))
    record = _varint(len(body)) + body
    now = int(time.time() * 1000)
    after_crc = (struct.pack(">hiqqqhii", 0x30, 0, now, now, 4242, 0, -1, 1) + record)
    batch_rest = struct.pack(">ib", 0, 2) + struct.pack(">I", _crc32c(after_crc)) + after_crc
    batch = struct.pack(">qi", 0, len(batch_rest)) + batch_rest
    t = topic.encode()
    client = b"openeg-e2e"
    req = (struct.pack(">hhih", 0, 3, 7, len(client)) + client
           + struct.pack(">hhii", -1, -1, 30000, 1) + struct.pack(">h", len(t)) + t
           + struct.pack(">ii", 1, partition) + struct.pack(">i", len(batch)) + batch)
    host, port = brokers.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", _recv_exactly(s, 4))[0]
        resp = _recv_exactly(s, size)
    # correlation id, topics[1]: name, partitions[1]: index, error code, ...
    (n_topics,) = struct.unpack_from(">i", resp, 4)
    (name_len,) = struct.unpack_from(">h", resp, 8)
    at = 10 + name_len
    _, _, error = struct.unpack_from(">iih", resp, at)
    assert n_topics == 1, resp
    return error == 0


def test_kafka_job_zstd_and_a_partition_that_ends_in_a_marker():
    """A topic whose end is a transaction marker: the job copies every record (zstd), and
    syncDetail's remaining reaches 0 (the marker counts in the watermark, is not a record)."""
    from confluent_kafka import Consumer, TopicPartition
    brokers = kafka_brokers()
    sink = Tansu()
    srv = DataServer()
    t = uniq("e2e-rjm")
    alias = uniq("m").replace("-", "")
    n = 60
    try:
        sink.start()
        create_topic(brokers, t, 1)
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": brokers})
        for i in range(n):
            p.produce(t, f"v-{i}".encode() * 20, key=f"k-{i}".encode(), partition=0)
        assert p.flush(60) == 0
        if not append_commit_marker(brokers, t):
            # A broker with transactions: one record in a committed transaction.
            tp = Producer({"bootstrap.servers": brokers, "transactional.id": uniq("e2e-tx")})
            tp.init_transactions(30)
            tp.begin_transaction()
            tp.produce(t, f"v-{n}".encode() * 20, key=f"k-{n}".encode(), partition=0)
            tp.commit_transaction(30)
            n += 1
        c = Consumer({"bootstrap.servers": brokers, "group.id": uniq("e2e-marks")})
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)[1] == n + 1
        c.close()
        srv.start()
        raw = srv.raw()
        jid = kafka_job(raw, brokers, alias, sink.addr, topics=t, compress_alg="zstd")
        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "START"})
        assert r.status == 200, r

        def caught_up():
            d = sync_detail(raw, jid)
            items = d.get("items") or []
            return d if items and d["metadata"]["sync_remain_total"] == 0 else None
        d = wait_until(caught_up, 90, "syncDetail to reach 0 remaining", srv, interval=1)
        od = d["items"][0]["offset_details"][0]["offset"]
        assert od["offset"] == od["max_offset"] == n + 1, d
        copies = read_all(sink.addr, f"{alias}.{t}")[0]
        assert [(k, v) for (_, k, v, _) in copies] == [
            (f"k-{i}".encode(), f"v-{i}".encode() * 20) for i in range(n)]
        j = raw.call("GET", f"{JOBS}/{jid}").json()
        assert (j["status"], j["sink_status"]) == ("RUNNING", "NORMAL"), j
    finally:
        srv.stop()
        sink.stop()
