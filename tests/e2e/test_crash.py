"""Crash safety of the data plane (issue #5).

* Concurrent publishers while the server is SIGKILLed and restarted several times: every event
  acknowledged with 200 (and no per-event error) is delivered to the webhook at least once after
  the restarts. Duplicates are allowed (at-least-once) and reported. A second subscription's
  webhook fails the first two attempts of every event, so retry state (retrying deliveries,
  claims of the retry poller) crosses the kills: each event still gets its successful delivery.
* Torn tail: garbage appended to the newest log segment (a torn write) is discarded on restart;
  acknowledged events stay readable and new events publish, survive another crash and deliver.

Runs its own `openeg serve` (own data_dir; the session's store: SQLite, or PostgreSQL on the
PostgreSQL pass) so that it can kill it.
"""
from __future__ import annotations

import json
import os
import random
import struct
import threading
import time
from collections import Counter

import pytest
from huaweicloudsdkeg.v1 import (
    DeleteSubscriptionRequest, ShowDetailOfEventRequest, ShowDetailOfEventTraceRequest,
)

from dataplane import DataServer, event, put_raw, wait_until
from eglib import body_of, uniq
from receivers import Receiver, Reply
from sdkx import Resources, custom_source, webhook_target

# The load and the number of kills; OPENEG_CRASH_KILLS=100 for the long run by hand.
THREADS = 4
BATCH = 10
RATE = float(os.environ.get("OPENEG_CRASH_RATE", "400"))     # events/s over all senders
KILLS = int(os.environ.get("OPENEG_CRASH_KILLS", "20"))
DELIVERY_DEADLINE = 30.0
HOOK = "/crash-hook"
FLAKY = "/crash-flaky"
FLAKY_FAILURES = 2          # attempts of each event the flaky webhook answers 500
FLAKY_KILLS = 3
FLAKY_RATE = 200.0


@pytest.fixture(scope="module")
def env():
    rx = Receiver()
    ids = Counter()
    lock = threading.Lock()

    def on_req(rec):
        if rec.path != HOOK:
            return
        try:
            eid = rec.json()["id"]
        except Exception:  # noqa: BLE001
            return
        with lock:
            ids[eid] += 1
    rx.on_request(on_req)
    srv = DataServer()
    srv.start()
    eg, raw = srv.sdk("a"), srv.raw("a")
    res = Resources(eg, raw)
    ch = res.channel()
    src = res.source(ch.id)
    sub = res.subscription(ch.id, [custom_source(src.name)],
                           [webhook_target(rx.url(HOOK))])
    e = dict(srv=srv, rx=rx, eg=eg, raw=raw, res=res, ch=ch, src=src, sub=sub, ids=ids,
             ids_lock=lock)
    yield e
    if srv.alive():
        try:
            res.cleanup()
        except Exception:  # noqa: BLE001
            pass
    problem = srv.stop()
    rx.close()
    if problem:
        pytest.fail(problem, pytrace=False)


def received(env) -> Counter:
    """Event id → requests to the plain webhook."""
    with env["ids_lock"]:
        return Counter(env["ids"])


def show_event(env, eid):
    return body_of(env["eg"].show_detail_of_event(ShowDetailOfEventRequest(trace_id=eid)))


# ----------------------------------------------------------------------------- crash loop

def crash_loop(env, ch, src, kills: int, rate: float):
    """THREADS senders publish `rate` events/s in batches of BATCH into `ch` while the server
    is SIGKILLed `kills` times, 1–3 s apart, each kill followed by a restart. Returns the
    acknowledged ids, client stats, the publishing time and the restart times."""
    srv, raw = env["srv"], env["raw"]
    stop = threading.Event()
    acked: list[str] = []
    stats = Counter()
    lock = threading.Lock()

    def client(n: int):
        seq = 0
        period = THREADS * BATCH / rate      # each sender's share of the rate
        next_t = time.monotonic()
        while not stop.is_set():
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
            evs = []
            for _ in range(BATCH):
                seq += 1
                evs.append(event(src.name, id=f"c{n}-{seq}-{uniq('x')}", data={"c": n, "s": seq}))
            try:
                r = put_raw(raw, ch.id, evs, timeout=5)
            except Exception:  # noqa: BLE001 - connection refused/reset during a kill
                with lock:
                    stats["errors"] += 1
                time.sleep(0.05)
                next_t = time.monotonic()
                continue
            if r.status != 200:
                with lock:
                    stats[f"http_{r.status}"] += 1
                time.sleep(0.05)
                next_t = time.monotonic()
                continue
            out = r.json()["events"]
            ok = [x["event_id"] for x in out if "error_code" not in x]
            with lock:
                acked.extend(ok)
                stats["rejected"] += len(out) - len(ok)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    rng = random.Random()
    restart_times = []
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            srv.kill()
            time.sleep(rng.uniform(0.1, 0.4))
            ts = time.monotonic()
            srv.start()
            restart_times.append(round(time.monotonic() - ts, 2))
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    publish_s = time.monotonic() - t0
    assert srv.alive()
    assert acked, f"no event was acknowledged at all: {dict(stats)}"
    assert stats["rejected"] == 0, f"events rejected per event: {dict(stats)}"
    want = set(acked)
    assert len(want) == len(acked)
    return want, stats, publish_s, restart_times


def test_sigkill_during_concurrent_publishing(env):
    srv, ch, src = env["srv"], env["ch"], env["src"]
    want, stats, publish_s, restart_times = crash_loop(env, ch, src, KILLS, RATE)
    acked = sorted(want)

    def all_delivered():
        missing = want - set(received(env))
        assert not missing, f"{len(missing)} acknowledged events not delivered yet"
        return True
    t_drain = time.monotonic()
    try:
        wait_until(all_delivered, DELIVERY_DEADLINE, "every acknowledged event delivered", srv,
                   interval=0.25)
        drain_s = time.monotonic() - t_drain
    except AssertionError:
        missing = sorted(want - set(received(env)))
        stored = []
        for eid in missing[:2]:
            try:
                show_event(env, eid)
                stored.append(f"{eid}: stored")
            except Exception as e:  # noqa: BLE001
                stored.append(f"{eid}: {getattr(e, 'status_code', e)}")
            try:
                tr = body_of(env["eg"].show_detail_of_event_trace(ShowDetailOfEventTraceRequest(
                    trace_id=eid, channel_id=ch.id)))
                stored.append(f"trace {json.dumps(tr.get('deliverList'))}")
            except Exception as e:  # noqa: BLE001
                stored.append(f"trace: {getattr(e, 'status_code', e)}")
        raise AssertionError(
            f"{len(missing)} of {len(want)} acknowledged events never reached the webhook "
            f"within {DELIVERY_DEADLINE}s after the last restart; e.g. {missing[:5]}; "
            f"ShowDetailOfEvent: {stored}; client stats {dict(stats)}\n"
            f"server log tail:\n{srv.log_tail(40)}")
    got = received(env)
    dups = sum(c - 1 for eid, c in got.items() if eid in want and c > 1)
    print(f"\ncrash: {len(want)} acked events, {KILLS} SIGKILLs, publish phase {publish_s:.1f}s, "
          f"restart times {restart_times}s, client stats {dict(stats)}, "
          f"duplicates delivered {dups} ({dups / len(want):.2%}), unacked-but-delivered "
          f"{len(set(got) - want)}, drained {drain_s:.1f}s after the last restart")
    # The duplicate bound (docs/limits.md) is held at 2 % by crates/openeg-bench/tests/crash.rs,
    # whose Rust receiver answers at once. This receiver shares the interpreter with the
    # publishers and answers slowly, so more attempts are in flight at each kill; a share far
    # beyond the window (a restart re-sending what was recorded) still fails here.
    assert dups <= 0.10 * len(want), f"{dups} duplicates of {len(want)} acknowledged events"
    # acknowledged events are stored (ShowDetailOfEvent) after all the crashes
    for sample in random.sample(acked, min(20, len(acked))):
        assert show_event(env, sample)["id"] == sample


# ----------------------------------------------------------------------------- retries across kills

def test_sigkill_with_retries_pending(env):
    """A webhook that fails the first FLAKY_FAILURES attempts of every event: retry state
    (retrying deliveries, the retry poller's claims) crosses the kills, and every
    acknowledged event still gets its successful delivery, promptly after the last restart
    (a claim held by the killed process is released at start, not waited out)."""
    rx, res = env["rx"], env["res"]
    lock = threading.Lock()
    tries, ok_ids = Counter(), Counter()

    def flaky(rec):
        try:
            eid = rec.json()["id"]
        except Exception:  # noqa: BLE001
            return 400
        with lock:
            tries[eid] += 1
            if tries[eid] <= FLAKY_FAILURES:
                return 500
            ok_ids[eid] += 1
            return 200
    rx.respond(FLAKY, flaky)
    ch = res.channel()
    src = res.source(ch.id)
    res.subscription(ch.id, [custom_source(src.name)], [webhook_target(rx.url(FLAKY))])
    want, stats, publish_s, _ = crash_loop(env, ch, src, FLAKY_KILLS, FLAKY_RATE)

    def all_succeeded():
        with lock:
            missing = want - set(ok_ids)
        assert not missing, f"{len(missing)} of {len(want)} events not delivered successfully yet"
        return True
    wait_until(all_succeeded, DELIVERY_DEADLINE, "every event delivered after its retries",
               env["srv"], interval=0.25)
    with lock:
        dups = sum(c - 1 for eid, c in ok_ids.items() if eid in want and c > 1)
    print(f"\nretries across kills: {len(want)} acked events, {FLAKY_KILLS} SIGKILLs, "
          f"duplicate successes {dups}, client stats {dict(stats)}")


# ----------------------------------------------------------------------------- graceful restart

def test_graceful_restart_resumes_backlog_promptly(env):
    """SIGTERM with deliveries in flight and queued: after the restart every acknowledged event
    is delivered promptly (docs/limits.md: first attempt within 1 s when the target has capacity;
    a restart loses no delivery)."""
    srv, rx = env["srv"], env["rx"]
    slow = "/crash-slow"
    rx.script(slow, default=Reply(200, delay=0.4))
    res = env["res"]
    sub = res.subscription(env["ch"].id, [custom_source(env["src"].name, {
        "source": [{"op": "StringIn", "values": [env["src"].name]}],
        "type": [{"op": "StringIn", "values": ["graceful"]}]})], [webhook_target(rx.url(slow))])
    evs = [event(env["src"].name, type="graceful", data={"i": i}) for i in range(60)]
    for i in range(0, len(evs), 20):
        r = put_raw(env["raw"], env["ch"].id, evs[i:i + 20])
        assert r.status == 200 and r.json()["failed_count"] == 0, r
    rx.wait(slow, count=5, timeout=10)           # deliveries are in flight
    rc = srv.terminate()
    assert rc == 0, f"graceful shutdown exit code {rc}"
    srv.start()
    want = {e["id"] for e in evs}
    t0 = time.monotonic()

    def done():
        got = {r.json()["id"] for r in rx.requests(slow) if r.body}
        missing = want - got
        assert not missing, f"{len(missing)} of {len(want)} not delivered yet"
        return True
    try:
        wait_until(done, 15, "backlog delivered after a graceful restart", srv, interval=0.25)
    finally:
        try:
            res.eg.delete_subscription(DeleteSubscriptionRequest(subscription_id=sub.id))
            res.subs.remove(sub.id)
        except Exception:  # noqa: BLE001
            pass
    print(f"\ngraceful restart: backlog of {len(want)} delivered {time.monotonic() - t0:.1f}s "
          f"after the restart")


# ----------------------------------------------------------------------------- torn tail

def newest_segment(env):
    d = env["srv"].topic_dir(env["srv"].a.project, env["ch"].id)
    segs = sorted(p for p in d.iterdir() if p.suffix == ".log")
    assert segs, f"no segment files in {d}: {list(d.iterdir())}"
    return segs[-1]


def frames_chain_exactly(path) -> tuple[bool, str]:
    """Walk `body_len u32 | body` frames (openeg-log frame.rs); True if they end exactly at EOF."""
    data = path.read_bytes()
    pos, n = 0, 0
    while pos + 4 <= len(data):
        (blen,) = struct.unpack_from("<I", data, pos)
        pos += 4 + blen
        n += 1
    return pos == len(data), f"{path.name}: {n} frames, walk ends at {pos}, size {len(data)}"


def readable_after_restart(env, e, timeout=20.0):
    """The acknowledged event is in the log; ShowDetailOfEvent finds it through its trace
    row, which a restarted router rewrites when it replays what it had not committed (its
    trace rows are written behind delivery), so allow for that replay."""
    wait_until(lambda: show_event(env, e["id"]) == e, timeout,
               f"ShowDetailOfEvent of {e['id']} after the restart", env["srv"])


def publish_one(env, **kw):
    e = event(env["src"].name, **kw)
    r = put_raw(env["raw"], env["ch"].id, [e])
    assert r.status == 200 and r.json()["failed_count"] == 0, r
    return e


def wait_delivered(env, eid, timeout=10.0):
    wait_until(lambda: received(env)[eid] >= 1, timeout, f"delivery of {eid}", env["srv"])


def test_torn_tail_is_discarded(env):
    srv = env["srv"]
    e1 = publish_one(env, data={"torn": 1})
    wait_delivered(env, e1["id"])
    srv.kill()
    seg = newest_segment(env)
    size = seg.stat().st_size
    ok, why = frames_chain_exactly(seg)
    assert ok, f"segment not cleanly framed before the test tampered with it: {why}"
    # a torn write: the header of a frame that claims 4096 body bytes, then only 29 of them
    garbage = struct.pack("<IIQI", 4096, 0xDEADBEEF, 10**9, 7) + os.urandom(13) + b"TORN-TAIL-XYZ"
    with open(seg, "ab") as f:
        f.write(garbage)
    srv.start()                                   # must start despite the torn tail
    readable_after_restart(env, e1)  # acknowledged event still readable
    e2 = publish_one(env, data={"torn": 2})
    wait_delivered(env, e2["id"])
    segs = sorted(p for p in seg.parent.iterdir() if p.suffix == ".log")
    for p in segs:
        ok, why = frames_chain_exactly(p)
        assert ok, f"torn tail not truncated before new appends: {why}"
        assert b"TORN-TAIL-XYZ" not in p.read_bytes(), f"garbage still in {p.name}"

    # a complete-length frame with a bad checksum at the tail, then another crash
    srv.kill()
    seg = newest_segment(env)
    body = struct.pack("<IQI", 0x12345678, 10**9, 1) + struct.pack("<I", 8) + b"BADCRC!!"
    with open(seg, "ab") as f:
        f.write(struct.pack("<I", len(body)) + body)   # body_len counts the bytes after itself
    srv.start()
    readable_after_restart(env, e2)  # survived the crash and the tamper
    e3 = publish_one(env, data={"torn": 3})
    wait_delivered(env, e3["id"])
    srv.kill()                                    # e3 must survive a crash right after delivery
    srv.start()
    readable_after_restart(env, e3)
    e4 = publish_one(env, data={"torn": 4})
    wait_delivered(env, e4["id"])
    for p in sorted(q for q in seg.parent.iterdir() if q.suffix == ".log"):
        ok, why = frames_chain_exactly(p)
        assert ok, why
