"""Event streams that move data, through the SDK (issue #15), against the Kafka-API broker of
`OPENEG_TEST_KAFKA_BROKERS` (tansu in CI):

* Kafka → Kafka: 10,000 records over 3 partitions, a filter and a VARIABLE transform, while
  OpenEG is SIGKILLed 10 times: exactly the expected set arrives (duplicates bounded).
* Kafka → FunctionGraph (a local fake): batches of at most `count`; the function down for
  60 s: ERROR, committed offsets unmoved, everything arrives after; PAUSE writes nothing and
  START resumes with no gap.
* Kafka → OBS into the S3 API server of `OPENEG_TEST_S3_ENDPOINT` (moto in CI): every record
  in objects named after their batch, through a SIGKILL; the secret key never comes back.

Skipped without the variable unless OPENEG_REQUIRE_KAFKA=1.
"""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
from huaweicloudsdkeg.v1 import (
    BatchWindow, CreateEventStreamingRequest, EventStreamingCreateReq,
    EventStreamingCreateReqRuleConfig, EventStreamingOperateReq, EventStreamingSink,
    EventStreamingSource, ResumeEventStreamingRequest, RunOption, ShowEventStreamingRequest,
    SinkFGParameters, SinkKafkaParameters, SinkObsParameters, SourceKafkaMQParameters, TransForm,
)

from dataplane import DataServer, wait_until
from eglib import uniq
from receivers import Receiver
from sdkx import Resources, fn_urn
from test_brokers import consume, create_topic, kafka_brokers, kafka_connection

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")


# SIGKILLs of OpenEG while a stream runs.
KILLS = 10


def produce(brokers: str, topic: str, records: list[tuple[int, dict]], partitions: int = 3):
    from confluent_kafka import Producer
    # Few, large produce requests: a burst of small ones has stalled the SQLite test broker.
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 100, "batch.num.messages": 10000})
    for i, v in records:
        p.produce(topic, json.dumps(v).encode(), key=f"k-{i}".encode(), partition=i % partitions)
        p.poll(0)
    assert p.flush(60) == 0


def create_stream(eg, name, source, sink, rule=None, option=None) -> str:
    r = eg.create_event_streaming(CreateEventStreamingRequest(body=EventStreamingCreateReq(
        name=name, source=source, sink=sink,
        rule_config=rule or EventStreamingCreateReqRuleConfig(), option=option or RunOption())))
    return r.event_streaming_id


def operate(eg, sid, op):
    eg.resume_event_streaming(ResumeEventStreamingRequest(
        eventstreaming_id=sid, body=EventStreamingOperateReq(operation=op)))


def status(eg, sid) -> str:
    return eg.show_event_streaming(ShowEventStreamingRequest(eventstreaming_id=sid)).status


def test_kafka_to_kafka_10000_records_through_ten_sigkills():
    brokers = kafka_brokers()
    src, dst = uniq("e2e-st-src"), uniq("e2e-st-dst")
    create_topic(brokers, src, 3)
    create_topic(brokers, dst, 3)
    n = 10_000
    srv = DataServer()
    try:
        srv.start()
        eg, raw = srv.sdk(), srv.raw()
        res = Resources(eg, raw)
        conn = kafka_connection(res, brokers, eg)
        sid = create_stream(
            eg, uniq("st"),
            EventStreamingSource(source_kafka=SourceKafkaMQParameters(
                addr=brokers, group=uniq("e2e-g"), topic=src, seek_to="earliest")),
            EventStreamingSink(sink_kafka=SinkKafkaParameters(topic=dst, connection_id=conn.id)),
            EventStreamingCreateReqRuleConfig(
                filter={"data": {"n": [{"op": "NumberNotInRange", "values": [[100, 199]]}]}},
                transform=TransForm(type="VARIABLE", value='{"n":"$.data.n","id":"$.id"}',
                                    template='{"n":${n},"from":"${id}"}')),
            RunOption(thread_num=3, batch_window=BatchWindow(count=200, interval=1)))
        operate(eg, sid, "START")
        wait_until(lambda: status(eg, sid) == "RUNNING", 30, "RUNNING")
        producer = threading.Thread(target=produce, args=(
            brokers, src, [(i, {"n": i}) for i in range(n)]))
        producer.start()
        want = {i for i in range(n) if not 100 <= i <= 199}

        def arrived():
            got = consume(brokers, dst, len(want), 5, key=lambda m: json.loads(m.value())["n"],
                          idle=5)
            return got
        for k in range(1, KILLS + 1):
            wait_until(lambda: len(arrived()) >= k * len(want) // (KILLS + 1), 120,
                       f"{k}/{KILLS + 1} of the records", srv, interval=0.5)
            srv.kill()
            srv.start()
        producer.join(120)
        got = wait_until(lambda: (lambda g: g if set(g) >= want else None)(arrived()), 180,
                         "every record in the sink topic", srv, interval=1)
        assert set(got) == want
        m = got[7][0]
        assert json.loads(m.value()) == {"n": 7, "from": f"{src}-{7 % 3}-{7 // 3}"}
        total = sum(len(v) for v in got.values())
        # Duplicates: at most what was at the sink, or taken and not committed, at each kill.
        assert total - len(want) <= KILLS * 3 * 200 * 2, total - len(want)
        assert status(eg, sid) == "RUNNING"
    finally:
        srv.stop()


def committed(brokers: str, group: str, topic: str, partitions: int = 3) -> list[int]:
    """The group's committed offset per partition (-1001: none yet)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def test_kafka_to_functiongraph_batches_outage_pause_and_start():
    """Batches of at most `count`; the function down (503) for OPENEG_E2E_OUTAGE_S seconds
    (60 by default): ERROR meanwhile, the committed offsets never pass what the function
    took, everything arrives after; PAUSE writes nothing, START resumes with no gap."""
    brokers = kafka_brokers()
    src, group = uniq("e2e-st-fg"), uniq("e2e-g")
    create_topic(brokers, src, 3)
    outage = float(os.environ.get("OPENEG_E2E_OUTAGE_S", "60"))
    rx = Receiver()
    srv = DataServer(extra={"functiongraph_endpoint": rx.base})
    try:
        srv.start()
        eg = srv.sdk()
        sid = create_stream(
            eg, uniq("st"),
            EventStreamingSource(source_kafka=SourceKafkaMQParameters(
                addr=brokers, group=group, topic=src, seek_to="earliest")),
            EventStreamingSink(sink_fg=SinkFGParameters(urn=fn_urn(srv.a.project),
                                                        invoke_type="SYNC")),
            option=RunOption(thread_num=2, batch_window=BatchWindow(count=100, interval=1)))
        assert status(eg, sid) == "CREATED"
        operate(eg, sid, "START")
        wait_until(lambda: status(eg, sid) == "RUNNING", 30, "RUNNING")
        produce(brokers, src, [(i, {"n": i}) for i in range(1000)])

        def seen():
            out = []
            for r in rx.requests():
                if r.status == 200:
                    out += [e["data"]["n"] for e in r.json()]
            return out
        wait_until(lambda: set(seen()) >= set(range(1000)), 60, "1000 records at the function")
        calls = rx.requests()
        assert all(r.path.endswith("/invocations") for r in calls)
        assert all(len(r.json()) <= 100 for r in calls)
        assert len(calls) <= 10 + 3, len(calls)
        # Records i go to partition i % 3: 334, 333 and 333 of them.
        done = [334, 333, 333]
        wait_until(lambda: committed(brokers, group, src) == done, 15, "the commits")

        # The function fails: ERROR, and the committed offsets stay where they were.
        down = {"on": True}
        rx.respond(calls[0].path, lambda r: 503 if down["on"] else 200)
        produce(brokers, src, [(i, {"n": i}) for i in range(1000, 1300)])
        wait_until(lambda: status(eg, sid) == "ERROR", 20, "ERROR while the function fails")
        detail = eg.show_event_streaming(ShowEventStreamingRequest(eventstreaming_id=sid))
        assert detail.status == "ERROR"
        raw = srv.raw()
        shown = raw.call("GET", f"/v1/{srv.a.project}/eventstreamings/{sid}").json()
        assert "503" in shown["error_info"]["error_detail"], shown
        st = wait_until(lambda: (lambda v: v if v["sink_failures"] > 0 else None)(
            raw.call("GET", f"/openeg/v1/eventstreamings/{sid}/status").json()), 20, "figures")
        assert st["status"] == "ERROR" and "503" in st["last_error"], st
        assert st["records_written"] >= 1000 and st["node"], st
        end = time.monotonic() + outage
        while time.monotonic() < end:
            assert committed(brokers, group, src) == done
            time.sleep(2)
        assert rx.count() > len(calls), "the failing batches were retried"
        # The 300 records held back count as lag (the client reports every 5 s).
        lag = wait_until(lambda: (lambda v: v if (v["lag"] or 0) >= 300 else None)(
            raw.call("GET", f"/openeg/v1/eventstreamings/{sid}/status").json()), 20, "lag")
        assert lag["lag"] == 300, lag
        down["on"] = False
        wait_until(lambda: set(seen()) >= set(range(1300)), 90, "the records after the outage")
        wait_until(lambda: status(eg, sid) == "RUNNING", 30, "RUNNING again")
        done = [434, 433, 433]
        wait_until(lambda: committed(brokers, group, src) == done, 15, "the commits")
        st = raw.call("GET", f"/openeg/v1/eventstreamings/{sid}/status").json()
        assert st["status"] == "RUNNING" and st["error_info"] == {}, st
        assert st["records_read"] >= 1300 and st["records_written"] >= 1300, st
        assert st["records_filtered"] == 0 and st["records_skipped"] == 0, st
        wait_until(lambda: raw.call("GET", f"/openeg/v1/eventstreamings/{sid}/status").json()[
            "lag"] == 0, 20, "no lag once everything is committed")
        assert f'openeg_stream_lag{{stream_id="{sid}"}} 0' in srv.metrics_text()

        operate(eg, sid, "PAUSE")
        assert status(eg, sid) == "STOPPED"
        before = rx.count()
        produce(brokers, src, [(i, {"n": i}) for i in range(1300, 1600)])
        time.sleep(3)
        assert rx.count() == before, "written while paused"
        assert committed(brokers, group, src) == done
        operate(eg, sid, "START")
        wait_until(lambda: set(seen()) >= set(range(1600)), 60, "the records after START")
        wait_until(lambda: status(eg, sid) == "RUNNING", 30, "RUNNING")
    finally:
        srv.stop()
        rx.close()


def s3_endpoint() -> str:
    url = os.environ.get("OPENEG_TEST_S3_ENDPOINT", "")
    if not url:
        if os.environ.get("OPENEG_REQUIRE_S3") == "1":
            pytest.fail("OPENEG_REQUIRE_S3=1 but OPENEG_TEST_S3_ENDPOINT is not set")
        pytest.skip("OPENEG_TEST_S3_ENDPOINT not set")
    return url


def test_kafka_to_obs_every_record_in_batch_objects_through_a_sigkill():
    import boto3
    import re
    brokers, s3url = kafka_brokers(), s3_endpoint()
    s3 = boto3.client("s3", endpoint_url=s3url, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    bucket, src = uniq("e2e-obs").lower(), uniq("e2e-st-obs")
    s3.create_bucket(Bucket=bucket)
    create_topic(brokers, src, 3)
    n = 3_000
    srv = DataServer(extra={"obs_endpoint": s3url})

    def lines() -> list[dict]:
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
                out += [dict(json.loads(line), _key=o["Key"]) for line in body.splitlines()]
        return out
    try:
        srv.start()
        eg = srv.sdk()
        sid = create_stream(
            eg, uniq("st"),
            EventStreamingSource(source_kafka=SourceKafkaMQParameters(
                addr=brokers, group=uniq("e2e-g"), topic=src, seek_to="earliest")),
            EventStreamingSink(sink_obs=SinkObsParameters(
                access_key="test", secret_key="test", obs_bucket=bucket, obs_path="events",
                time_format="yyyy/MM/dd/HH")),
            option=RunOption(thread_num=2, batch_window=BatchWindow(count=250, interval=1)))
        shown = eg.show_event_streaming(ShowEventStreamingRequest(eventstreaming_id=sid))
        assert shown.sink.sink_obs.secret_key != "test"
        operate(eg, sid, "START")
        wait_until(lambda: status(eg, sid) == "RUNNING", 30, "RUNNING")
        produce(brokers, src, [(i, {"n": i}) for i in range(n)])
        wait_until(lambda: len(lines()) >= n // 3, 120, "a third of the records", srv,
                   interval=1)
        srv.kill()
        srv.start()
        got = wait_until(
            lambda: (lambda g: g if {e["data"]["n"] for e in g} >= set(range(n)) else None)(
                lines()), 180, "every record in the bucket", srv, interval=1)
        assert {e["data"]["n"] for e in got} == set(range(n))
        key = re.compile(r"^events/\d{4}/\d{2}/\d{2}/\d{2}/(\d+)-(\d+)-(\d+)\.json$")
        for e in got:
            m = key.match(e["_key"])
            assert m, e["_key"]
            p, first, last = (int(x) for x in m.groups())
            assert e["id"].startswith(f"{src}-{p}-"), (e["id"], e["_key"])
            assert first <= int(e["id"].rsplit("-", 1)[1]) <= last, (e["id"], e["_key"])
            assert last - first < 250, e["_key"]
        assert status(eg, sid) == "RUNNING"
    finally:
        srv.stop()


def test_sigterm_stops_the_server_while_a_source_waits_on_an_unreachable_cluster():
    """A stream whose Kafka source is still waiting for a cluster that never answers (a
    blocking metadata request of up to 15 s) must not hold up a SIGTERM: the server exits
    within the harness's 10 s, cleanly."""
    import socket
    # Accepts connections (the kernel's backlog) and never answers a request.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    addr = f"127.0.0.1:{silent.getsockname()[1]}"
    # A configured function endpoint (never called): the sink builds, so the run reaches
    # the source's metadata request.
    srv = DataServer(extra={"functiongraph_endpoint": "http://127.0.0.1:9"})
    try:
        srv.start()
        eg = srv.sdk()
        sid = create_stream(
            eg, uniq("st"),
            EventStreamingSource(source_kafka=SourceKafkaMQParameters(
                addr=addr, group=uniq("e2e-g"), topic=uniq("e2e-st-none"),
                seek_to="earliest")),
            EventStreamingSink(sink_fg=SinkFGParameters(urn=fn_urn(srv.a.project),
                                                        invoke_type="SYNC")))
        operate(eg, sid, "START")
        time.sleep(3)
        # Still starting: the source is inside its metadata request (up to 15 s).
        shown = srv.raw().call("GET", f"/v1/{srv.a.project}/eventstreamings/{sid}").json()
        assert "starting" in shown["error_info"]["error_detail"], shown
        assert srv.alive()
        rc = srv.terminate(timeout=10)
        assert rc == 0, f"exit {rc} after SIGTERM (None: still running after 10 s, killed)"
    finally:
        srv.stop()
        silent.close()
