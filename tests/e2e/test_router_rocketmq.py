"""RocketMQ→RocketMQ event-router jobs (issue #16), through the signed API, between the two
rocketmq-rust clusters `scripts/brokers.sh` starts (`OPENEG_TEST_ROCKETMQ_NAMESRV`, cluster
DefaultCluster / broker-a, and `OPENEG_TEST_ROCKETMQ_NAMESRV2`, BackupCluster / broker-b).

* 20,000 messages over two topics, with tags, keys and a user property, are copied while
  OpenEG is SIGKILLed and restarted mid-copy: afterwards every message is on the target with
  its tag, keys, property and body (nothing lost; at-least-once allows a few copied twice),
  and syncDetail reports every queue caught up (`rocketmq_offset == max_offset`).
* ValidateEventRouterJob asks a RocketMQ name server for its cluster for real: a port that is
  not RocketMQ fails with the reason.

The test client is `openeg-bench rocketmq` (Python has no client that works against
rocketmq-rust). Skipped without the variables unless OPENEG_REQUIRE_ROCKETMQ=1.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from dataplane import DataServer, wait_until
from eglib import uniq
from test_brokers import rmq, rocketmq_namesrv
from test_router_jobs import CLUSTERS, JOBS, cluster_body, job_body

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")

TAGS = ["TagA", "TagB", "TagC"]


def namesrv2() -> str:
    v = os.environ.get("OPENEG_TEST_ROCKETMQ_NAMESRV2", "").strip()
    if not v:
        if os.environ.get("OPENEG_REQUIRE_ROCKETMQ") == "1":
            pytest.fail("OPENEG_REQUIRE_ROCKETMQ=1 but OPENEG_TEST_ROCKETMQ_NAMESRV2 is not set")
        pytest.skip("OPENEG_TEST_ROCKETMQ_NAMESRV2 not set")
    return v


def rmq_ep(addr: str) -> dict:
    return {"config_type": "CLOUD", "region": "r1", "project_id": "p1", "instance_id": "rmq-i",
            "cluster_alias": "dr", "address": addr, "ssl_open": "false", "acl_open": False,
            "user_name": "", "password": ""}


def sync_detail(raw, jid, **kw):
    r = raw.call("POST", f"{JOBS}/{jid}/syncDetail", body={"offset": 0, "limit": 10, **kw})
    assert r.status == 200, r
    return r.json()


def read_topic(namesrv: str, topic: str, want: set[str]) -> dict[str, list[dict]]:
    """Every copy of `topic`, by keys: read in a new group from the first offset until every
    key of `want` arrived (a few copies may be there twice)."""
    count = len(want)
    for _ in range(4):
        out = rmq("consume", "--namesrv", namesrv, "--topic", topic, "--group", uniq("e2e-g"),
                  "--count", str(count), "--timeout", "120", timeout=200) \
            if count else ""
        by_key: dict[str, list[dict]] = {}
        for line in out.splitlines():
            if line.strip():
                m = json.loads(line)
                by_key.setdefault(m["keys"], []).append(m)
        if want <= set(by_key):
            return by_key
        # Duplicates took the place of later messages: read more.
        count += len(want - set(by_key))
    raise AssertionError(f"{len(want - set(by_key))} messages missing on the target")


def test_rocketmq_to_rocketmq_job_20000_messages_through_sigkill():
    ns1, ns2 = rocketmq_namesrv(), namesrv2()
    topics = [uniq("dr-rmq-a"), uniq("dr-rmq-b")]
    n = 10_000
    for t in topics:
        # The topic exists (auto-created by the broker) before the job starts.
        rmq("produce", "--namesrv", ns1, "--topic", t, "--count", "1", "--prefix", "warm")
    srv = DataServer()
    producers = []
    try:
        srv.start()
        raw = srv.raw()
        r = raw.call("POST", CLUSTERS,
                     body=cluster_body(source_type="ROCKETMQ", sink_type="ROCKETMQ"))
        assert r.status == 200, r
        cid = r.json()["cluster_id"]
        r = raw.call("POST", JOBS, body=job_body(
            cid,
            source_config=[{"source_rocketmq": [rmq_ep(ns1)]}],
            sink_config=[{"sink_rocketmq": [rmq_ep(ns2)]}],
            advance_config=[{"rocketmq2rocketmq": [{
                "topics": ",".join(topics), "topic_regex": "", "is_sync_progress": False,
                "seek_to": "first", "compress_alg": "none"}]}]))
        assert r.status == 200, r
        jid = r.json()["job_id"]
        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "START"})
        assert r.status == 200, r

        def job():
            return raw.call("GET", f"{JOBS}/{jid}").json()
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING", srv)
        j = job()
        assert (j["source_status"], j["sink_status"]) == ("NORMAL", "NORMAL"), j

        for t in topics:
            p = threading.Thread(target=rmq, args=(
                "produce", "--namesrv", ns1, "--topic", t, "--count", str(n), "--prefix", t,
                "--tags", ",".join(TAGS)), kwargs={"timeout": 600})
            p.start()
            producers.append(p)

        def copied():
            d = sync_detail(raw, jid)
            return sum(q["offset"]["rocketmq_offset"] for row in d.get("items", [])
                       for q in row["offset_details"])
        wait_until(lambda: copied() > n // 2, 180, "a quarter of the messages copied", srv)
        srv.kill()
        time.sleep(1)
        srv.start()
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING after the restart", srv)
        for p in producers:
            p.join(600)
            assert not p.is_alive()

        def caught_up():
            d = sync_detail(raw, jid)
            rows = d.get("items") or []
            done = (len(rows) == 2 and d["metadata"]["sync_remain_total"] == 0
                    and all(sum(q["offset"]["max_offset"] for q in row["offset_details"])
                            == n + 1 for row in rows))
            return d if done else None
        d = wait_until(caught_up, 180, "syncDetail to reach 0 remaining", srv, interval=1)
        assert d["type"] == "ROCKETMQ" and d["total"] == 2 and d["size"] == 2, d
        assert sorted(row["topic"] for row in d["items"]) == sorted(topics), d
        for row in d["items"]:
            assert row["sync_remain_num"] == 0 and row["number"] == len(row["offset_details"])
            for q in row["offset_details"]:
                assert q["queue"]["rocketmq_topic"] == row["topic"], q
                assert q["queue"]["rocketmq_broker"] == "broker-a", q
                assert q["offset"]["rocketmq_offset"] == q["offset"]["max_offset"], q
        # The topic condition filters rows.
        one = sync_detail(raw, jid, conditions=[
            {"key": "topic", "operate": "EQUAL", "value": topics[1]}])
        assert [row["topic"] for row in one["items"]] == [topics[1]], one

        for t in topics:
            want = {f"{t}-{i}" for i in range(n)}
            got = read_topic(ns2, t, want | {"warm-0"})
            for i in range(n):
                copies = got[f"{t}-{i}"]
                for m in copies:
                    assert m["tags"] == TAGS[i % 3] and m["seq"] == str(i), m
                    assert json.loads(m["body"])["i"] == i and m["broker"] == "broker-b", m
            # At-least-once: the round in flight at the kill (at most 2,048 messages over
            # both topics) may be copied again.
            twice = sum(len(v) - 1 for v in got.values())
            assert twice <= 2_048, f"{twice} copies twice"

        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "STOP"})
        assert r.status == 200, r
        assert job()["status"] == "STOPPED"
        assert sync_detail(raw, jid)["state"] == "NOT_RUNNING"
    finally:
        for p in producers:
            p.join(600)
        srv.stop()


def test_rocketmq_job_validation_asks_the_name_server(raw_a):
    ns1 = rocketmq_namesrv()
    fake = socket.socket()
    fake.bind(("127.0.0.1", 0))
    fake.listen(4)
    fake_port = fake.getsockname()[1]

    def serve_garbage():
        while True:
            try:
                c, _ = fake.accept()
                c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                c.close()
            except OSError:
                return
    threading.Thread(target=serve_garbage, daemon=True).start()
    try:
        r = raw_a.call("POST", CLUSTERS,
                       body=cluster_body(source_type="ROCKETMQ", sink_type="ROCKETMQ"))
        assert r.status == 200, r
        cid = r.json()["cluster_id"]
        r = raw_a.call("POST", JOBS + "/validation", body={
            "cluster_id": cid, "source_config": {"source_rocketmq": rmq_ep(ns1)},
            "sink_config": {"sink_rocketmq": rmq_ep(f"127.0.0.1:{fake_port}")}})
        assert r.status == 200, r
        res = {x["check_item_name"]: x for x in r.json()["results"]}
        assert res["SOURCE_NETWORK"]["status"] == "SUCCESS", res
        assert res["SINK_NETWORK"]["status"] == "FAILED", res
        assert "RocketMQ check" in res["SINK_NETWORK"]["reason"], res
    finally:
        fake.close()
