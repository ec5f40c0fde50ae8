"""Redis→Redis event-router jobs (issue #16), through the signed API, between two real
`redis-server` processes this test starts on free ports (`OPENEG_TEST_REDIS_SERVER`: the
binary; CI sets it).

* 100,000 keys of mixed types, most with TTLs, are copied as a snapshot, then writes go on at
  about 1,000 a second while OpenEG is SIGKILLed and restarted mid-stream: the job continues
  the source's stream (`+CONTINUE`: the source counts one full sync and a partial one) and
  afterwards every key is equal on both sides (DUMP) with its TTL.
* syncDetail reports the Redis item (addresses, phase, offsets) and key counts; STOP stops.

Skipped without the variable unless OPENEG_REQUIRE_REDIS=1.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from dataplane import DataServer, wait_until
from test_router_jobs import CLUSTERS, JOBS, cluster_body, job_body

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")


def redis_bin() -> str | None:
    b = os.environ.get("OPENEG_TEST_REDIS_SERVER", "").strip()
    if not b:
        if os.environ.get("OPENEG_REQUIRE_REDIS") == "1":
            pytest.fail("OPENEG_REQUIRE_REDIS=1 but OPENEG_TEST_REDIS_SERVER is not set")
        pytest.skip("OPENEG_TEST_REDIS_SERVER not set")
    return b


class RedisServer:
    """A redis-server of this test's own on a free port (nothing saved to disk)."""

    def __init__(self, binary: str):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.dir = tempfile.mkdtemp(prefix="openeg-e2e-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--repl-backlog-size", "64mb", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        wait_until(lambda: self._ping(), 10, "redis-server to start")

    def _ping(self):
        try:
            return self.client.ping()
        except Exception:
            return False

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def db(self, n: int):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=n)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fill(r, n: int):
    """n keys: strings, hashes, lists, sets, sorted sets and streams; 2 of 3 with a TTL."""
    p = r.pipeline(transaction=False)
    for i in range(n):
        k = f"k:{i}"
        kind = i % 6
        if kind == 0:
            p.set(k, f"value-{i}")
        elif kind == 1:
            p.hset(k, mapping={f"f{j}": f"v{j}" for j in range(1 + i % 8)})
        elif kind == 2:
            p.rpush(k, *[f"e{j}" for j in range(1 + i % 10)])
        elif kind == 3:
            p.sadd(k, *range(1 + i % 10))
        elif kind == 4:
            p.zadd(k, {f"m{j}": j * 0.5 for j in range(1 + i % 10)})
        else:
            p.xadd(k, {"f": str(i)})
        if i % 3:
            p.pexpire(k, 3_600_000 + i)
        if i % 1000 == 999:
            p.execute()
    p.execute()


def writer(addr_port: int, stop: threading.Event, counter: list):
    """Writes whose replay changes nothing (a crash may apply the last ones twice): SET, HSET,
    SADD, ZADD, DEL, PEXPIREAT, about 1,000 a second."""
    import redis
    r = redis.Redis(host="127.0.0.1", port=addr_port)
    i = 0
    while not stop.is_set():
        p = r.pipeline(transaction=False)
        for _ in range(50):
            i += 1
            k = f"k:{(i * 7919) % 100_000}"
            op = i % 6
            if op == 0:
                p.set(f"live:{i % 500}", i)
            elif op == 1:
                p.hset(f"lh:{i % 100}", f"f{i % 13}", i)
            elif op == 2:
                p.sadd(f"ls:{i % 50}", i % 97)
            elif op == 3:
                p.zadd(f"lz:{i % 50}", {f"m{i % 31}": i % 5})
            elif op == 4:
                p.delete(k)
            else:
                p.pexpireat(f"live:{i % 500}", int(time.time() * 1000) + 7_200_000 + i)
        p.execute()
        counter[0] = i
        time.sleep(0.05)


def content(r, k):
    t = r.type(k).decode()
    if t == "string":
        return t, r.get(k)
    if t == "list":
        return t, r.lrange(k, 0, -1)
    if t == "set":
        return t, sorted(r.smembers(k))
    if t == "hash":
        return t, sorted(r.hgetall(k).items())
    if t == "zset":
        return t, r.zrange(k, 0, -1, withscores=True)
    if t == "stream":
        return t, r.xrange(k)
    raise AssertionError(f"{k!r}: type {t}")


def same_keys(src, dst) -> int:
    keys = list(src.scan_iter(count=5000))
    assert len(keys) == dst.dbsize(), (len(keys), dst.dbsize())
    for at in range(0, len(keys), 1000):
        chunk = keys[at:at + 1000]
        ps, pd = src.pipeline(transaction=False), dst.pipeline(transaction=False)
        for k in chunk:
            ps.dump(k)
            ps.pttl(k)
            pd.dump(k)
            pd.pttl(k)
        a, b = ps.execute(), pd.execute()
        for j, k in enumerate(chunk):
            if a[2 * j] != b[2 * j]:
                # Hash-table encodings serialise in a per-process hash order: then the
                # content must be equal.
                assert content(src, k) == content(dst, k), f"{k!r}: DUMP and content differ"
            ta, tb = a[2 * j + 1], b[2 * j + 1]
            assert (ta < 0 and ta == tb) or (ta >= 0 and tb >= 0 and abs(ta - tb) < 10_000), (
                k, ta, tb)
    return len(keys)


def dcs_ep(addr: str) -> dict:
    return {"config_type": "CLOUD", "region": "r1", "project_id": "p1", "instance_id": "",
            "address": addr, "password": ""}


def sync_detail(raw, jid):
    r = raw.call("POST", f"{JOBS}/{jid}/syncDetail", body={"offset": 0, "limit": 10})
    assert r.status == 200, r
    return r.json()


def test_redis_to_redis_job_survives_sigkill_without_a_new_full_sync():
    binary = redis_bin()
    src, dst = RedisServer(binary), RedisServer(binary)
    srv = DataServer()
    stop = threading.Event()
    counter = [0]
    w = None
    n = 100_000
    try:
        fill(src.client, n)
        srv.start()
        raw = srv.raw()
        r = raw.call("POST", CLUSTERS, body=cluster_body(source_type="DCS", sink_type="DCS"))
        assert r.status == 200, r
        cid = r.json()["cluster_id"]
        r = raw.call("POST", JOBS, body=job_body(
            cid,
            source_config=[{"source_dcs": [dcs_ep(src.addr)]}],
            sink_config=[{"sink_dcs": [dcs_ep(dst.addr)]}],
            advance_config=[{"dcs2dcs": [{"synchronize_type": "full_incremental",
                                          "connect_retry_time": "1", "other_retry_time": "1",
                                          "use_rate_limit": False}]}]))
        assert r.status == 200, r
        jid = r.json()["job_id"]
        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "START"})
        assert r.status == 200, r

        def job():
            return raw.call("GET", f"{JOBS}/{jid}").json()

        def incremental():
            d = sync_detail(raw, jid)
            items = d.get("items") or []
            return d if items and items[0]["syncPhase"] == "incremental" else None
        wait_until(incremental, 180, "the snapshot to be copied", srv, interval=0.5)
        j = job()
        assert (j["status"], j["source_status"], j["sink_status"]) == (
            "RUNNING", "NORMAL", "NORMAL"), j

        w = threading.Thread(target=writer, args=(src.port, stop, counter))
        w.start()
        wait_until(lambda: counter[0] > 3000, 30, "writes")
        srv.kill()
        time.sleep(1)
        srv.start()
        wait_until(lambda: job()["status"] == "RUNNING", 60, "RUNNING after the restart", srv)
        wait_until(lambda: counter[0] > 8000, 60, "writes after the restart")
        stop.set()
        w.join(30)

        def caught_up():
            d = sync_detail(raw, jid)
            items = d.get("items") or []
            want = src.client.info("replication")["master_repl_offset"]
            return d if (items and items[0]["sinkOffset"] >= want
                         and d["metadata"]["sync_remain_total"] == 0) else None
        d = wait_until(caught_up, 120, "syncDetail to reach 0 remaining", srv, interval=0.5)
        stats = src.client.info("stats")
        assert stats["sync_full"] == 1, stats
        assert stats["sync_partial_ok"] >= 1, stats

        item = d["items"][0]
        assert d["type"] == "DCS" and d["total"] == 1 and d["size"] == 1, d
        assert (item["sourceAddr"], item["sinkAddr"]) == (src.addr, dst.addr), item
        assert item["syncPhase"] == "incremental" and item["taskStatus"] == "syncing", item
        assert float(item["taskProgress"]) == 1.0, item
        assert same_keys(src.client, dst.client) > n // 2
        d = wait_until(lambda: (lambda x: x if x["metadata"].get("source_key_num")
                                == src.client.dbsize() else None)(sync_detail(raw, jid)),
                       10, "key counts", srv)
        assert d["metadata"]["sink_key_num"] == dst.client.dbsize(), d

        r = raw.call("POST", f"{JOBS}/{jid}/action", body={"operation": "STOP"})
        assert r.status == 200, r
        assert job()["status"] == "STOPPED"
        assert sync_detail(raw, jid)["state"] == "NOT_RUNNING"
    finally:
        stop.set()
        if w:
            w.join(30)
        srv.stop()
        src.stop()
        dst.stop()


def test_dcs_job_validation_authenticates_for_real(raw_a):
    """ValidateEventRouterJob on DCS endpoints: past the TCP connect, AUTH and PING with the
    password given; a wrong password, or a port that is not Redis, fails with the reason (and
    never echoes the password)."""
    binary = redis_bin()
    plain, locked = RedisServer(binary), RedisServer(binary)
    fake = socket.socket()
    fake.bind(("127.0.0.1", 0))
    fake.listen(4)
    fake_port = fake.getsockname()[1]

    def serve_garbage():
        for _ in range(2):
            try:
                c, _ = fake.accept()
                c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                c.close()
            except OSError:
                return
    threading.Thread(target=serve_garbage, daemon=True).start()
    try:
        locked.client.config_set("requirepass", "s3cret-pw")
        r = raw_a.call("POST", CLUSTERS, body=cluster_body(source_type="DCS", sink_type="DCS"))
        assert r.status == 200, r
        cid = r.json()["cluster_id"]

        def check(source: dict, sink: dict) -> list:
            r = raw_a.call("POST", JOBS + "/validation", body={
                "cluster_id": cid, "source_config": {"source_dcs": source},
                "sink_config": {"sink_dcs": sink}})
            assert r.status == 200, r
            return r.json()["results"]

        res = check(dcs_ep(plain.addr), {**dcs_ep(locked.addr), "password": "s3cret-pw"})
        assert [x["status"] for x in res] == ["SUCCESS", "SUCCESS"], res
        res = check({**dcs_ep(locked.addr), "password": "wrong-pw"},
                    dcs_ep(f"127.0.0.1:{fake_port}"))
        assert [x["status"] for x in res] == ["FAILED", "FAILED"], res
        assert "authentication failed" in res[0]["reason"].lower(), res
        assert all("wrong-pw" not in x["reason"] for x in res), res
        raw_a.call("DELETE", f"{CLUSTERS}/{cid}")
    finally:
        fake.close()
        plain.stop()
        locked.stop()
