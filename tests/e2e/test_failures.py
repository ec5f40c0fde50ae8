"""Honest failure answers (issue #11).

* A channel log that cannot take an append (failed fsync) answers PutEvents and
  PutOfficialEvents with 503 EG.00511001 and Retry-After, acknowledging no event of the request;
  GET /openeg/v1/health is 503 while any channel log is failed; the log recovers in place, with
  no restart, and every event acknowledged before and after the failure is delivered, none of
  the refused ones.
* Every request body over a size limit gets the EG JSON error with its request id: PutEvents'
  256 KB limit (400 EG.00513000) and the server's 12 MiB limit (413 APIGW.0201), with
  Content-Length and chunked, also between axum's 2 MiB default and 12 MiB.

The storage failure comes from the server's test-only fault-injection mock: started with
OPENEG_FAULT_INJECTION_DIR=<dir>, every log sync fails while <dir>/log-sync exists. Runs its own
server (SQLite or the session's PostgreSQL choice) because of that switch.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests
from huaweicloudsdkeg.v1 import (
    CloudEvents, PutEventsReq, PutEventsRequest, ShowDetailOfEventRequest,
)

from dataplane import DataServer, event, put_raw, wait_until
from eglib import Resp, assert_eg_error, body_of, sdk_err, uniq
from receivers import Receiver
from sdkx import Resources, custom_source, src_filter, webhook_target

SETTLE = 1.5
MAX_BODY = 12 * 1024 * 1024


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def faults():
    d = Path(tempfile.mkdtemp(prefix="openeg-faults-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(faults):
    s = DataServer(env={"OPENEG_FAULT_INJECTION_DIR": str(faults)})
    s.start()
    yield s
    problem = s.stop()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def eg(srv):
    return srv.sdk("a")


@pytest.fixture(scope="module")
def raw(srv):
    return srv.raw("a")


@pytest.fixture
def res(eg, raw, srv):
    r = Resources(eg, raw)
    yield r
    r.cleanup()
    print("---- private openeg server log tail ----\n" + srv.log_tail(40))


# ----------------------------------------------------------------------------- helpers

def health(srv) -> Resp:
    r = requests.get(srv.base_url + "/openeg/v1/health", timeout=10)
    return Resp(r.status_code, r.headers, r.content)


def put_sdk(eg, channel_id, events):
    return eg.put_events(PutEventsRequest(channel_id=channel_id, body=PutEventsReq(
        events=[CloudEvents(**e) for e in events])))


def assert_unavailable(r):
    """503 EG.00511001 in EG's shape, with Retry-After in whole seconds."""
    assert_eg_error(r, 503, "EG.00511001")
    retry_after = r.header("Retry-After")
    assert retry_after and retry_after.isdigit() and int(retry_after) >= 1, retry_after


# ----------------------------------------------------------------------------- log failure

def test_log_failure_is_503_and_the_log_recovers_without_a_restart(srv, eg, raw, res, rx,
                                                                   faults):
    hook = "/" + uniq("fail")
    ch = res.channel()
    src = res.source(ch.id)
    res.subscription(ch.id, [custom_source(src.name, src_filter(src.name))],
                     [webhook_target(rx.url(hook))])
    before = [event(src.name) for _ in range(3)]
    b = body_of(put_sdk(eg, ch.id, before))
    assert b["failed_count"] == 0, b
    h = health(srv)
    assert h.status == 200 and h.json() == {"status": "ok"}, h

    switch = faults / "log-sync"
    refused = []
    switch.touch()
    try:
        # Through the SDK: a server-side exception with the EG code, not a 200 report.
        evs = [event(src.name) for _ in range(2)]
        e = sdk_err(put_sdk, eg, ch.id, evs)
        assert_eg_error(e, 503, "EG.00511001")
        refused += [x["id"] for x in evs]
        # Raw: the same answer with Retry-After, and it stays so while syncs fail.
        for _ in range(2):
            evs = [event(src.name)]
            assert_unavailable(put_raw(raw, ch.id, evs))
            refused += [x["id"] for x in evs]
        # PutOfficialEvents (the project's default channel) fails the same way.
        off = event("HC.OBS")
        r = raw.call("POST", "/v1/{p}/official/sources/HC.OBS/events", body={"events": [off]})
        assert_unavailable(r)
        # Health names the failed channel logs.
        h = health(srv)
        assert_unavailable(h)
        assert ch.id in h.json()["error_msg"], h
    finally:
        switch.unlink(missing_ok=True)

    # The log recovers on its own: health turns 200 with no restart and no publish.
    def healthy():
        r = health(srv)
        assert r.status == 200, r
        return True
    wait_until(healthy, 15, "health 200 after the fault is gone", srv, interval=0.2)
    after = [event(src.name) for _ in range(3)]
    b = body_of(put_sdk(eg, ch.id, after))
    assert b["failed_count"] == 0, b
    assert srv.starts == 1 and srv.alive(), "the server must recover without a restart"

    want = {x["id"] for x in before + after}

    def delivered():
        got = {r.json()["id"] for r in rx.requests(hook) if r.body}
        missing = want - got
        assert not missing, f"{len(missing)} acknowledged events not delivered yet"
        return got
    wait_until(delivered, 15, "every acknowledged event delivered", srv, interval=0.2)
    time.sleep(SETTLE)
    got = [r.json()["id"] for r in rx.requests(hook) if r.body]
    assert not set(refused) & set(got), "an event of a refused request was delivered"
    # Acknowledged events are stored; refused ones are not.
    for x in (before[0], after[-1]):
        stored = wait_until(lambda: body_of(eg.show_detail_of_event(
            ShowDetailOfEventRequest(trace_id=x["id"]))), 10, f"event {x['id']} stored", srv)
        assert stored["id"] == x["id"]
    e = sdk_err(eg.show_detail_of_event, ShowDetailOfEventRequest(trace_id=refused[0]))
    assert e.status_code == 404, e


# ----------------------------------------------------------------------------- body limits

def _chunks(body: bytes, size: int = 256 * 1024):
    for i in range(0, len(body), size):
        yield body[i:i + size]


def send_big(raw, path: str, body: bytes, chunked: bool, sign: bool = True) -> Resp:
    """POST `body` with Content-Length or chunked (no Content-Length), through `requests`."""
    req = raw.prepare("POST", path, body=body, project_header=sign)
    if sign:
        req.sign(raw.ak, raw.sk)
    data = _chunks(body) if chunked else body
    try:
        r = requests.post(f"http://{raw.authority}{req.path}", data=data, headers=req.headers,
                          timeout=60)
    except requests.ConnectionError as e:
        raise AssertionError(f"no answer to a {len(body)}-byte body "
                             f"({'chunked' if chunked else 'Content-Length'}): {e}") from e
    if chunked:
        assert "Content-Length" not in r.request.headers
        assert r.request.headers.get("Transfer-Encoding") == "chunked"
    return Resp(r.status_code, r.headers, r.content)


def padded(prefix: str, n: int, suffix: str) -> bytes:
    """`prefix + 'p' * k + suffix` of exactly n bytes."""
    pad = n - len(prefix) - len(suffix)
    assert pad > 0
    return (prefix + "p" * pad + suffix).encode()


SIZES = [1 << 20, 3 << 20, MAX_BODY + 1]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", SIZES, ids=["1MiB", "3MiB", "12MiB+1"])
def test_every_oversized_body_gets_the_eg_error(raw_a, res_a, size, chunked):
    ch = res_a.channel()
    src = res_a.source(ch.id)
    too_big_for_server = size > MAX_BODY
    ev = json.dumps(event(src.name))[:-1]
    cases = [
        # PutEvents' own limit is 256 KB: a whole-request 400 below the server's limit.
        (f"/v1/{{p}}/channels/{ch.id}/events",
         padded('{"events":[' + ev + ', "data": {"pad": "', size, '"}}]}'), True,
         "EG.00513000"),
        # CreateChannel: the body reaches the handler (description too long) below the limit.
        ("/v1/{p}/channels", padded('{"name": "' + uniq("big") + '", "description": "', size,
                                    '"}'), True, "EG.00513000"),
        # The unauthenticated token issuer reads bodies through another path than signed routes.
        ("/v3/auth/tokens", padded('{"pad": "', size, '"}'), False, "EG.00513000"),
    ]
    for path, body, sign, code in cases:
        assert len(body) == size
        r = send_big(raw_a, path, body, chunked, sign=sign)
        if too_big_for_server:
            assert_eg_error(r, 413, "APIGW.0201")
        else:
            assert_eg_error(r, 400, code)
    # Nothing was created or published by the refused requests.
    r = raw_a.call("GET", "/v1/{p}/channels", query={"limit": 1000})
    assert not [c for c in r.json()["items"] if c["name"].startswith("big-")], r
    r = put_raw(raw_a, ch.id, [event(src.name)])
    assert r.status == 200 and r.json()["failed_count"] == 0, r
