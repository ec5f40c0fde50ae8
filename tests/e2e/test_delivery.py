"""Data plane (issue #5): PutEvents → filter → transform → delivery, against local fakes.

A private `openeg serve` (module-scoped) is started with `functiongraph_endpoint` and
`smn_endpoint` pointing at a local scriptable receiver (receivers.py); webhook and APIGW targets
point at the same receiver. Reference: docs/transforms.md, docs/limits.md,
docs/errors.md.
"""
from __future__ import annotations

import json
import re
import socket
import time

import pytest
from huaweicloudsdkeg.v1 import (
    CloudEvents, DeleteSubscriptionRequest, ExecuteSubscriptionOperationRequest,
    ListChannelsRequest, ListPubMetricsRequest, PutOfficialEventsRequest,
    SmnTargetDetailSubjectTransform, SubscriptionSource,
    ListSubMetricsRequest, ListTracedEventsRequest, PutEventsReq, PutEventsRequest,
    ShowDetailOfEventRequest, ShowDetailOfEventTraceRequest, SmnTargetDetail,
    SubscriptionOperateReq, SubscriptionTarget, TransForm, UpdateSubscriptionSourceRequest,
    UpdateSubscriptionTargetRequest,
)

from dataplane import DataServer, event, new_id, put_raw, metric_values, wait_until
from eglib import assert_eg_error, body_of, uniq
from receivers import Receiver, Reply
from sdkx import (
    Resources, apigw_target, custom_source, eg_target, fg_target, fn_urn, smn_target,
    src_filter, webhook_target, workflow_target,
)

SETTLE = 1.5          # extra wait to prove that nothing more arrives
TIME_FMT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def srv(rx):
    s = DataServer(extra={"functiongraph_endpoint": rx.base, "smn_endpoint": rx.base})
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


@pytest.fixture(scope="module")
def pa(srv):
    return srv.a.project


@pytest.fixture
def res(eg, raw, srv):
    r = Resources(eg, raw)
    yield r
    r.cleanup()
    # printed only when the test failed (pytest shows captured teardown output then)
    print("---- private openeg server log tail ----\n" + srv.log_tail(40))


@pytest.fixture
def P():
    """A unique path prefix for this test's receiver paths."""
    return "/" + uniq("t")


# ----------------------------------------------------------------------------- helpers

def setup(res, targets, filt_extra=None, sub_name=None):
    """A channel, a custom source attached to it, one subscription; returns (ch, src, sub)."""
    ch = res.channel()
    src = res.source(ch.id)
    sub = res.subscription(ch.id, [custom_source(src.name, src_filter(src.name, **(filt_extra or {})))],
                           targets, name=sub_name)
    return ch, src, sub


def put(eg, channel_id, events):
    """PutEvents through the SDK; asserts every event was accepted."""
    r = eg.put_events(PutEventsRequest(channel_id=channel_id, body=PutEventsReq(
        events=[CloudEvents(**e) for e in events])))
    b = body_of(r)
    assert b["failed_count"] == 0, b
    assert [x["event_id"] for x in b["events"]] == [e["id"] for e in events], b
    return b


def trace(eg, channel_id, event_id):
    return body_of(eg.show_detail_of_event_trace(
        ShowDetailOfEventTraceRequest(trace_id=event_id, channel_id=channel_id)))


def target_entry(tr, target_id):
    for d in tr.get("deliverList", []):
        for t in d.get("deliverTargetList", []):
            if t.get("deliverTargetId") == target_id:
                return d, t
    return None, None


def wait_target(eg, channel_id, event_id, target_id, status, attempts=None, srv=None,
                timeout=10.0):
    """Poll the trace until the target reaches `status` (and `attempts` detail rows)."""
    def ok():
        tr = trace(eg, channel_id, event_id)
        d, t = target_entry(tr, target_id)
        assert t is not None, f"target {target_id} not in trace {tr}"
        assert t["deliverStatus"] == status, t
        if attempts is not None:
            assert len(t["deliverDetailList"]) == attempts, t
        return tr, d, t
    return wait_until(ok, timeout, f"trace of {event_id} target {target_id} = {status}", srv)


def traced(eg, channel_id, **kw):
    now = int(time.time() * 1000)
    return body_of(eg.list_traced_events(ListTracedEventsRequest(
        start_time=now - 600_000, end_time=now + 60_000, channel_id=channel_id, limit="100",
        **kw)))


def tids(sub):
    return [t.id for t in sub.targets]


def free_port_closed() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_detail(d):
    assert TIME_FMT.match(d["deliverTime"]), d
    assert d["deliverStatus"] in ("SUCCESS", "FAILED"), d
    assert isinstance(d["deliverConsuming"], (int, float, str)), d
    assert isinstance(d["deliverRspCode"], str), d


# ----------------------------------------------------------------------------- webhook + transforms

def test_original_delivers_cloudevent_json(eg, raw, res, rx, srv, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/orig"))])
    e1 = event(src.name, type="order.created", subject="orders/1.json",
               time="2024-01-02T03:04:05Z", data={"order": {"id": "o-1", "amount": 1000.5}})
    put(eg, ch.id, [e1])
    # raw publish with an extension attribute: preserved in ORIGINAL output
    e2 = event(src.name, data={"k": [1, 2, {"z": None}]}, myext="ext-value")
    r = put_raw(raw, ch.id, [e2])
    assert r.status == 200 and r.json()["failed_count"] == 0, r

    recs = rx.wait(P + "/orig", count=2)
    bodies = {rec.json()["id"]: rec for rec in recs}
    assert set(bodies) == {e1["id"], e2["id"]}
    for e in (e1, e2):
        rec = bodies[e["id"]]
        assert rec.method == "POST"
        assert rec.header("content-type").lower().startswith("application/json"), rec.headers
        assert rec.json() == e, (rec.body, e)          # every attribute as received
        assert b": " not in rec.body and b", " not in rec.body, rec.body   # compact
    time.sleep(SETTLE)
    assert rx.count(P + "/orig") == 2, "each event must be delivered exactly once"

    # trace + stored event
    tr, d, t = wait_target(eg, ch.id, e1["id"], tids(sub)[0], "SUCCESS", 1, srv)
    assert tr["eventId"] == e1["id"] and tr["eventSource"] == src.name
    assert tr["eventType"] == "order.created" and tr["channelId"] == ch.id
    assert tr["channelName"] == ch.name
    assert isinstance(tr["receiveTime"], int)
    assert d["subscriptionId"] == sub.id and d["subscriptionName"] == sub.name
    assert d["successCounts"] == 1 and d["failCounts"] == 0 and d["allDeliverTimes"] == 1
    assert t["deliverDetailList"][0]["deliverRspCode"] == "200"
    check_detail(t["deliverDetailList"][0])
    stored = eg.show_detail_of_event(ShowDetailOfEventRequest(trace_id=e2["id"]))
    assert body_of(stored) == e2
    rows = traced(eg, ch.id, event_id=e1["id"])
    assert rows["total"] == 1 and rows["result"][0]["subscription_name"] == sub.name, rows
    row = rows["result"][0]
    assert row["source_name"] == src.name and row["source_provider"] == "CUSTOM"
    assert row["event_type"] == "order.created" and isinstance(row["event_received_time"], int)


def test_filter_and_variable_transform_exact(eg, res, rx, srv, P):
    # the transform example of docs/transforms.md behind a data filter
    tr = TransForm(type="VARIABLE",
                   value=json.dumps({"oid": "$.data.order.id", "amt": "$.data.order.amount",
                                     "src": "$.source", "subj": "$.subject"}),
                   template='{"order":"${oid}","amount":${amt},"source":"${src}",'
                            '"subject":"${subj}","kind":"demo"}')
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/var"), transform=tr)],
                         filt_extra={"data": {"order": {"amount": [
                             {"op": "NumberGreaterThan", "value": 100}]}}})
    miss = event(src.name, subject="orders/0.json", data={"order": {"id": "o-0", "amount": 5}})
    hit = event(src.name, subject="orders/1.json",
                data={"order": {"id": "o-1", "amount": 1000.5}, "region": "eu"})
    put(eg, ch.id, [miss, hit])
    recs = rx.wait(P + "/var", count=1)
    expected = ('{"order":"o-1","amount":1000.5,"source":"%s","subject":"orders/1.json",'
                '"kind":"demo"}' % src.name).encode()
    assert recs[0].body == expected
    assert recs[0].header("content-type").lower().startswith("application/json")
    time.sleep(SETTLE)
    assert rx.count(P + "/var") == 1, "the non-matching event must not be delivered"

    # the unmatched event is traced once with subscription_name ""
    rows = wait_until(lambda: traced(eg, ch.id, event_id=miss["id"])["total"] >= 1 and
                      traced(eg, ch.id, event_id=miss["id"]), 5, "trace row of unmatched", srv)
    assert rows["total"] == 1, rows
    assert rows["result"][0]["subscription_name"] == "" and rows["result"][0]["event_id"] == miss["id"]
    rows = traced(eg, ch.id, event_id=hit["id"])
    assert rows["total"] == 1 and rows["result"][0]["subscription_name"] == sub.name, rows
    # filtering by subscription_name "" style: source_name works
    allrows = traced(eg, ch.id, source_name=src.name)
    assert {r["event_id"] for r in allrows["result"]} == {miss["id"], hit["id"]}


def test_constant_and_plain_text_outputs(eg, res, rx, P):
    ts = [webhook_target(rx.url(P + "/c-text"),
                         transform=TransForm(type="CONSTANT", value="just a trigger")),
          webhook_target(rx.url(P + "/c-json"),
                         transform=TransForm(type="CONSTANT", value='{"trigger":"obs"}')),
          webhook_target(rx.url(P + "/v-text"), transform=TransForm(
              type="VARIABLE", value=json.dumps({"m": "$.data.msg"}), template="Message: ${m}")),
          webhook_target(rx.url(P + "/v-json"), transform=TransForm(
              type="VARIABLE", value=json.dumps({"m": "$.data.msg"}), template='{"m":"${m}"}'))]
    ch, src, sub = setup(res, ts)
    put(eg, ch.id, [event(src.name, data={"msg": 'say "hi"'})])
    exp = {"/c-text": (b"just a trigger", "text/plain"),
           "/c-json": (b'{"trigger":"obs"}', "application/json"),
           "/v-text": (b'Message: say "hi"', "text/plain"),          # T12
           "/v-json": (b'{"m":"say \\"hi\\""}', "application/json")}  # T11
    for path, (body, ct) in exp.items():
        rec = rx.wait(P + path, count=1)[0]
        assert rec.body == body, (path, rec.body)
        got_ct = rec.header("content-type") or ""
        assert got_ct.lower().startswith(ct), (path, got_ct)
        if ct == "text/plain":
            assert "charset=utf-8" in got_ct.lower().replace(" ", ""), got_ct


# ----------------------------------------------------------------------------- official targets

def test_functiongraph_sync_async_and_workflow(eg, res, rx, pa, P):
    fsync, fasync = uniq("fsync"), uniq("fasync")
    wf = uniq("wf")
    ch, src, sub = setup(res, [fg_target(fn_urn(pa, fsync), "SYNC"),
                               fg_target(fn_urn(pa, fasync), "ASYNC"),
                               workflow_target(wf)])
    e = event(src.name, data={"name": "test01"})
    put(eg, ch.id, [e])
    p_sync = f"/v2/{pa}/fgs/functions/{fn_urn(pa, fsync)}/invocations"
    p_async = f"/v2/{pa}/fgs/functions/{fn_urn(pa, fasync)}/invocations-async"
    p_wf = f"/v2/{pa}/fgs/workflows/{wf}/executions"
    for p in (p_sync, p_async):
        rec = rx.wait(p, count=1)[0]
        assert rec.method == "POST"
        assert rec.json() == e, rec.body
        assert (rec.header("content-type") or "").lower().startswith("application/json")
    rec = rx.wait(p_wf, count=1)[0]
    assert rec.method == "POST"
    json.loads(rec.body)   # a JSON body
    time.sleep(SETTLE)
    assert rx.count(p_sync) == 1 and rx.count(p_async) == 1 and rx.count(p_wf) == 1


def test_smn_publish(eg, res, rx, pa, P):
    urn1 = f"urn:smn:cn-north-4:{pa}:{uniq('topic')}"
    urn2 = f"urn:smn:cn-north-4:{pa}:{uniq('topic')}"
    t1 = smn_target(pa)
    t1.smn_detail.urn = urn1                       # subject CONSTANT "hello"
    t2 = SubscriptionTarget(name="HC.SMN", provider_type="OFFICIAL",
                            smn_detail=SmnTargetDetail(urn=urn2, agency_name="EG_AGENCY"),
                            transform=TransForm(type="CONSTANT", value="plain message"))
    urn3 = f"urn:smn:cn-north-4:{pa}:{uniq('topic')}"
    t3 = SubscriptionTarget(
        name="HC.SMN", provider_type="OFFICIAL",
        smn_detail=SmnTargetDetail(urn=urn3, agency_name="EG_AGENCY",
                                   subject_transform=SmnTargetDetailSubjectTransform(
                                       type="VARIABLE", value=json.dumps({"s": "$.data.long"}),
                                       template="S:${s}")),
        transform=TransForm(type="CONSTANT", value="m3"))
    ch, src, sub = setup(res, [t1, t2, t3])
    long = "x" * 600
    e = event(src.name, data={"a": 1, "long": long})
    put(eg, ch.id, [e])
    rec = rx.wait(f"/v2/{pa}/notifications/topics/{urn3}/publish", count=1)[0]
    assert rec.json() == {"subject": ("S:" + long)[:512], "message": "m3"}, rec.body
    rec = rx.wait(f"/v2/{pa}/notifications/topics/{urn1}/publish", count=1)[0]
    assert rec.method == "POST"
    b = rec.json()
    assert set(b) == {"subject", "message"}, b
    assert b["subject"] == "hello"
    assert isinstance(b["message"], str) and json.loads(b["message"]) == e
    rec = rx.wait(f"/v2/{pa}/notifications/topics/{urn2}/publish", count=1)[0]
    assert rec.json() == {"message": "plain message"}, rec.body   # no subject without transform


def test_apigw_header_parameters(eg, res, rx, P):
    secret = "apigw-" + uniq("secret")
    ch, src, sub = setup(res, [apigw_target(url=rx.url(P + "/apigw"), secret=secret)])
    e = event(src.name)
    put(eg, ch.id, [e])
    rec = rx.wait(P + "/apigw", count=1)[0]
    assert rec.method == "POST"
    assert rec.header("X-Plain") == "plain-value", rec.headers
    assert rec.header("X-Secret") == secret, rec.headers     # decrypted at send time
    assert rec.json() == e


# ----------------------------------------------------------------------------- HC.EG forwarding

def test_eg_forwarding(eg, res, rx, srv, pa, P):
    ch2 = res.channel()
    ch1, src, sub1 = setup(res, [eg_target(pa, ch2.id)])
    # a subscription in the target channel naming the ORIGINAL source (of ch1) [dec]
    sub2 = res.subscription(ch2.id, [custom_source(src.name)],
                            [webhook_target(rx.url(P + "/fwd"))])
    e = event(src.name, type="fwd.test", data={"x": "y"})
    put(eg, ch1.id, [e])
    rec = rx.wait(P + "/fwd", count=1)[0]
    got = rec.json()
    for k, v in e.items():
        assert got.get(k) == v, (k, got)
    extra = set(got) - set(e)
    assert extra <= {"eghopcount"}, f"unexpected attributes added: {extra}"
    time.sleep(SETTLE)
    assert rx.count(P + "/fwd") == 1
    wait_target(eg, ch1.id, e["id"], tids(sub1)[0], "SUCCESS", 1, srv)
    rows = wait_until(lambda: traced(eg, ch2.id, event_id=e["id"])["total"] and
                      traced(eg, ch2.id, event_id=e["id"]), 5, "trace row in target channel", srv)
    assert rows["result"][0]["subscription_name"] == sub2.name, rows


def test_eg_hop_limit(eg, res, rx, srv, pa, P):
    chx = res.channel()
    chy = res.channel()
    src = res.source(chx.id)
    subx = res.subscription(chx.id, [custom_source(src.name)],
                            [eg_target(pa, chy.id), webhook_target(rx.url(P + "/hop-x"))])
    suby = res.subscription(chy.id, [custom_source(src.name)],
                            [eg_target(pa, chx.id), webhook_target(rx.url(P + "/hop-y"))])
    e = event(src.name, data={"loop": True})
    put(eg, chx.id, [e])
    # original in X, hop 1 in Y, hop 2 in X, hop 3 in Y; a 4th hop is refused
    rx.wait(P + "/hop-x", count=2, timeout=10)
    rx.wait(P + "/hop-y", count=2, timeout=10)
    time.sleep(SETTLE + 1)
    nx, ny = rx.count(P + "/hop-x"), rx.count(P + "/hop-y")
    assert (nx, ny) == (2, 2), f"expected 4 deliveries (2 per channel), got x={nx} y={ny}"
    for rec in rx.requests(P + "/hop-y"):
        assert "eghopcount" in rec.json(), rec.body
    # the refused 4th hop: the EG target of Y fails, without retry
    eg_y = tids(suby)[0]
    tr, d, t = wait_target(eg, chy.id, e["id"], eg_y, "FAILED", None, srv)
    assert len(t["deliverDetailList"]) == 1, t


# ----------------------------------------------------------------------------- retries

def test_500_retried_then_succeeds_once(eg, res, rx, srv, P):
    rx.script(P + "/r", 500, 500, 500)
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/r"))])     # retry_times default 16
    e = event(src.name)
    put(eg, ch.id, [e])
    recs = rx.wait(P + "/r", count=4, timeout=15)
    assert [r.status for r in recs] == [500, 500, 500, 200]
    for r in recs:
        assert r.json() == e
    gaps = [b.t - a.t for a, b in zip(recs, recs[1:])]
    for gap, nominal in zip(gaps, (1, 2, 4)):
        assert 0.8 * nominal - 0.1 <= gap <= 1.2 * nominal + 0.7, f"backoff gaps {gaps}"
    time.sleep(SETTLE)
    assert rx.count(P + "/r") == 4, "no attempt after the success"
    tr, d, t = wait_target(eg, ch.id, e["id"], tids(sub)[0], "SUCCESS", 3, srv)
    dl = t["deliverDetailList"]         # newest 3, newest first
    assert [x["deliverStatus"] for x in dl] == ["SUCCESS", "FAILED", "FAILED"], dl
    assert [x["deliverRspCode"] for x in dl] == ["200", "500", "500"], dl
    for x in dl:
        check_detail(x)
    assert dl[0]["deliverTime"] >= dl[1]["deliverTime"] >= dl[2]["deliverTime"]
    assert d["allDeliverTimes"] == 4 and d["successCounts"] == 1 and d["failCounts"] == 0, d


def test_retriable_statuses(eg, res, rx, srv, P):
    codes = [408, 429, 503, 502]
    for c in codes:
        rx.script(f"{P}/q{c}", c)
    ch, src, sub = setup(res, [webhook_target(rx.url(f"{P}/q{c}"), retry_times=2) for c in codes])
    e = event(src.name)
    put(eg, ch.id, [e])
    for c in codes:
        recs = rx.wait(f"{P}/q{c}", count=2, timeout=8)
        assert [r.status for r in recs[:2]] == [c, 200]
    time.sleep(SETTLE)
    for c in codes:
        assert rx.count(f"{P}/q{c}") == 2, c
    for c, tid in zip(codes, tids(sub)):
        tr, d, t = wait_target(eg, ch.id, e["id"], tid, "SUCCESS", 2, srv)
        assert [x["deliverRspCode"] for x in t["deliverDetailList"]] == ["200", str(c)]
    assert d["successCounts"] == len(codes) and d["allDeliverTimes"] == 2 * len(codes), d


def test_non_retriable_statuses_attempted_once(eg, res, rx, srv, P):
    codes = [400, 404, 410, 422, 302]
    for c in codes:
        rx.script(f"{P}/n{c}", default=c)
    # redirects are not followed (docs/limits.md) and count as a non-retried failure
    rx.script(f"{P}/n302", default=Reply(302, b"", headers={"Location": rx.url(P + "/moved")}))
    ch, src, sub = setup(res, [webhook_target(rx.url(f"{P}/n{c}"), retry_times=3) for c in codes])
    e = event(src.name)
    put(eg, ch.id, [e])
    for c in codes:
        rx.wait(f"{P}/n{c}", count=1)
    time.sleep(SETTLE + 0.5)            # a retry would come ~1 s after the first attempt
    for c in codes:
        assert rx.count(f"{P}/n{c}") == 1, f"HTTP {c} must not be retried"
    assert rx.count(P + "/moved") == 0, "a redirect must not be followed"
    for c, tid in zip(codes, tids(sub)):
        tr, d, t = wait_target(eg, ch.id, e["id"], tid, "FAILED", 1, srv)
        assert t["deliverDetailList"][0]["deliverRspCode"] == str(c)
        assert t["deliverDetailList"][0]["deliverStatus"] == "FAILED"
    assert d["failCounts"] == len(codes) and d["successCounts"] == 0, d
    assert d["allDeliverTimes"] == len(codes), d


def test_retry_times_zero_single_attempt(eg, res, rx, srv, P):
    rx.script(P + "/z", default=500)
    dead = f"http://127.0.0.1:{free_port_closed()}/nobody"
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/z"), retry_times=0),
                               webhook_target(dead, retry_times=0)])
    e = event(src.name)
    put(eg, ch.id, [e])
    rx.wait(P + "/z", count=1)
    time.sleep(SETTLE + 0.5)
    assert rx.count(P + "/z") == 1
    t_http, t_net = tids(sub)
    tr, d, t = wait_target(eg, ch.id, e["id"], t_http, "FAILED", 1, srv)
    assert t["deliverDetailList"][0]["deliverRspCode"] == "500"
    tr, d, t = wait_target(eg, ch.id, e["id"], t_net, "FAILED", 1, srv)
    assert t["deliverDetailList"][0]["deliverRspCode"] == "", t     # network failure
    assert d["failCounts"] == 2 and d["allDeliverTimes"] == 2, d


# ----------------------------------------------------------------------------- config changes

def op(eg, sid, operation):
    r = body_of(eg.execute_subscription_operation(ExecuteSubscriptionOperationRequest(
        body=SubscriptionOperateReq(subscription_ids=[sid], operation=operation))))
    assert r["failed_count"] == 0, r


def test_disable_enable(eg, res, rx, srv, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/de"))])
    e1, e2, e3 = (event(src.name, data={"i": i}) for i in range(3))
    put(eg, ch.id, [e1])
    rx.wait(P + "/de", count=1)
    op(eg, sub.id, "DISABLE")
    put(eg, ch.id, [e2])              # published while disabled: never delivered
    time.sleep(SETTLE)
    op(eg, sub.id, "ENABLE")
    put(eg, ch.id, [e3])
    recs = rx.wait(P + "/de", count=2)
    time.sleep(SETTLE)
    got = [r.json()["id"] for r in rx.requests(P + "/de")]
    assert got == [e1["id"], e3["id"]], \
        f"expected e1,e3 (e2 was published while DISABLED); got {got} (e2={e2['id']})"
    rows = traced(eg, ch.id, event_id=e2["id"])    # a DISABLED subscription matches nothing
    assert rows["total"] == 1 and rows["result"][0]["subscription_name"] == "", rows


def test_updates_apply_to_next_events(eg, res, rx, srv, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/u"),
                                              transform=TransForm(type="CONSTANT", value="v1"))])
    tid = tids(sub)[0]
    put(eg, ch.id, [event(src.name)])
    assert rx.wait(P + "/u", count=1)[0].body == b"v1"
    eg.update_subscription_target(UpdateSubscriptionTargetRequest(
        subscription_id=sub.id, target_id=tid,
        body=webhook_target(rx.url(P + "/u"), transform=TransForm(type="CONSTANT", value="v2"))))
    put(eg, ch.id, [event(src.name)])   # accepted after the update was acknowledged
    recs = rx.wait(P + "/u", count=2)
    assert recs[1].body == b"v2", [r.body for r in recs]
    # filter change: only type "keep" passes now
    sid = sub.sources[0].id
    eg.update_subscription_source(UpdateSubscriptionSourceRequest(
        subscription_id=sub.id, source_id=sid,
        body=custom_source(src.name, src_filter(src.name, type=[
            {"op": "StringIn", "values": ["keep"]}]))))
    drop, keep = event(src.name, type="drop"), event(src.name, type="keep")
    put(eg, ch.id, [drop, keep])
    rx.wait(P + "/u", count=3)
    time.sleep(SETTLE)
    assert rx.count(P + "/u") == 3, [r.body for r in rx.requests(P + "/u")]


# ----------------------------------------------------------------------------- publishing modes

def test_cloudevents_structured_and_binary_modes(eg, raw, res, rx, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/m"))])
    # structured mode: one event, Content-Type application/cloudevents+json
    es = event(src.name, type="structured", data={"mode": "structured"})
    r = raw.call("POST", f"/v1/{{p}}/channels/{ch.id}/events", body=json.dumps(es).encode(),
                 headers={"Content-Type": "application/cloudevents+json; charset=utf-8"})
    assert r.status == 200, r
    if r.body:
        b = r.json()
        assert b.get("failed_count", 0) == 0, b
    # binary mode: ce-* headers, body = data
    bid = new_id("bin")
    r = raw.call("POST", f"/v1/{{p}}/channels/{ch.id}/events",
                 body=json.dumps({"mode": "binary"}).encode(),
                 headers={"Content-Type": "application/json", "ce-specversion": "1.0",
                          "ce-id": bid, "ce-source": src.name, "ce-type": "binary",
                          "ce-subject": "s1"})
    assert r.status == 200, r
    if r.body:
        b = r.json()
        assert b.get("failed_count", 0) == 0, b
    recs = rx.wait(P + "/m", count=2)
    got = {x.json()["id"]: x.json() for x in recs}
    assert got[es["id"]] == es
    gb = got[bid]
    assert gb["source"] == src.name and gb["type"] == "binary" and gb["specversion"] == "1.0"
    assert gb["subject"] == "s1" and gb["data"] == {"mode": "binary"}


def test_21_events_rejected_whole(eg, raw, res, rx, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/21"))])
    evs = [event(src.name) for _ in range(21)]
    r = put_raw(raw, ch.id, evs)
    assert_eg_error(r, 400, "EG.00513000")
    ok = event(src.name)
    put_raw(raw, ch.id, [ok])
    rx.wait(P + "/21", count=1)
    time.sleep(SETTLE)
    assert [x.json()["id"] for x in rx.requests(P + "/21")] == [ok["id"]], \
        "nothing of the rejected 21-event request may be delivered"
    r = put_raw(raw, ch.id, evs[:20])
    assert r.status == 200 and r.json()["failed_count"] == 0, r


def test_invalid_events_reported_per_event(eg, raw, res, rx, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/inv"))])
    good1, good2 = event(src.name), event(src.name)
    no_id = event(src.name)
    no_id.pop("id")
    bad_spec = event(src.name, specversion="0.3")
    unknown_src = event("no-such-source-" + uniq("x"))
    bad_ext = event(src.name, **{"Bad_Ext": "x"})
    no_type = event(src.name)
    no_type.pop("type")
    evs = [good1, no_id, bad_spec, unknown_src, bad_ext, no_type, good2]
    r = put_raw(raw, ch.id, evs)
    assert r.status == 200, r
    b = r.json()
    assert b["failed_count"] == 5, b
    out = b["events"]
    assert len(out) == len(evs)
    assert [x["event_id"] for x in out] == [e.get("id", "") for e in evs], out
    expected = [None, "EG.00513000", "EG.00513000", "EG.00515001", "EG.00513000",
                "EG.00513000", None]
    for x, code in zip(out, expected):
        if code is None:
            assert "error_code" not in x and "error_msg" not in x, x
        else:
            assert x["error_code"] == code, (x, code)
            assert isinstance(x["error_msg"], str) and x["error_msg"], x
    recs = rx.wait(P + "/inv", count=2)
    time.sleep(SETTLE)
    assert sorted(x.json()["id"] for x in rx.requests(P + "/inv")) == \
        sorted([good1["id"], good2["id"]])


# ----------------------------------------------------------------------------- metrics

def test_metrics_counters_increase(eg, res, rx, srv, P):
    names = ["openeg_events_ingested_total", "openeg_deliveries_succeeded_total",
             "openeg_delivery_attempts_total", "openeg_events_matched_total"]
    before = metric_values(srv.metrics_text())
    for n in names:
        assert n in before, f"{n} missing from GET /metrics"
    rx.script(P + "/mx", 500)
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/mx"), retry_times=2)])
    evs = [event(src.name) for _ in range(3)]
    put(eg, ch.id, evs)
    rx.wait(P + "/mx", count=4)

    def grown():
        after = metric_values(srv.metrics_text())
        d = {n: after[n] - before[n] for n in names}
        ok = (d["openeg_events_ingested_total"] >= 3 and d["openeg_events_matched_total"] >= 3
              and d["openeg_deliveries_succeeded_total"] >= 3
              and d["openeg_delivery_attempts_total"] >= 4
              and after.get("openeg_delivery_retries_total", 0)
              - before.get("openeg_delivery_retries_total", 0) >= 1)
        assert ok, d
        return d
    wait_until(grown, 5, "metrics counters to grow", srv)

    now = int(time.time() * 1000)

    def pub():
        r = body_of(eg.list_pub_metrics(ListPubMetricsRequest(
            channel_id=ch.id, source_name=src.name, start_time=now - 600_000,
            end_time=now + 120_000, period=1)))
        assert sum(x["num"] for x in r["result"]) >= 3, r
        return r
    wait_until(pub, 5, "ListPubMetrics num >= 3", srv)

    def sub_m():
        r = body_of(eg.list_sub_metrics(ListSubMetricsRequest(
            subscription_id=sub.id, start_time=now - 600_000, end_time=now + 120_000,
            period=1)))
        assert sum(x["success_num"] for x in r["result"]) >= 3, r
        return r
    wait_until(sub_m, 5, "ListSubMetrics success_num >= 3", srv)


def test_pub_metrics_event_size_and_process_time(eg, res, srv, P):
    """ListPubMetrics aggregates the events' sizes and routing times per `filter`."""
    ch = res.channel()
    src = res.source(ch.id)
    small = event(src.name, data={"pad": "x" * 10})
    big = event(src.name, data={"pad": "x" * 1010})
    assert len(small["id"]) == len(big["id"])
    put(eg, ch.id, [small, big])
    now = int(time.time() * 1000)

    def stat(f):
        r = body_of(eg.list_pub_metrics(ListPubMetricsRequest(
            filter=f, channel_id=ch.id, start_time=now - 600_000, end_time=now + 120_000,
            period=60)))
        assert len(r["result"]) == 1 and r["result"][0]["num"] == 2, r
        return r["result"][0]
    total = wait_until(lambda: stat("sum"), 5, "ListPubMetrics to count both events", srv)
    mx, mn, avg = stat("max"), stat("min"), stat("avg")
    # Same attributes, data 1000 bytes apart: the sizes are the events' own.
    assert mx["event_size"] - mn["event_size"] == 1000, (mx, mn)
    assert mn["event_size"] > 10, mn
    assert total["event_size"] == mx["event_size"] + mn["event_size"], (total, mx, mn)
    assert avg["event_size"] == total["event_size"] // 2, (avg, total)
    assert 0 <= mn["process_time"] <= mx["process_time"] <= total["process_time"], (mn, mx, total)
    assert mx["process_time"] < 5000, mx
    assert total["invoke_time"] == total["process_time"], total


# ----------------------------------------------------------------------------- more delivery rules

def test_retry_after_honoured(eg, res, rx, srv, P):
    rx.script(P + "/ra", Reply(429, b"", headers={"Retry-After": "3"}))
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/ra"), retry_times=2)])
    put(eg, ch.id, [event(src.name)])
    recs = rx.wait(P + "/ra", count=2, timeout=10)
    gap = recs[1].t - recs[0].t
    assert 2.9 <= gap <= 4.5, f"429 Retry-After: 3 not honoured: retry came after {gap:.2f}s"
    wait_target(eg, ch.id, recs[0].json()["id"], tids(sub)[0], "SUCCESS", 2, srv)


def test_disable_keeps_pending_retries(eg, res, rx, srv, P):
    rx.script(P + "/dk", 500)
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/dk"), retry_times=3)])
    e = event(src.name)
    put(eg, ch.id, [e])
    rx.wait(P + "/dk", count=1)
    op(eg, sub.id, "DISABLE")          # already matched: its retry still happens (docs/limits.md)
    recs = rx.wait(P + "/dk", count=2, timeout=6)
    assert [r.status for r in recs] == [500, 200]
    wait_target(eg, ch.id, e["id"], tids(sub)[0], "SUCCESS", 2, srv)


def test_delete_subscription_drops_pending_retries(eg, res, rx, srv, P):
    rx.script(P + "/del", default=500)
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/del"), retry_times=5)])
    put(eg, ch.id, [event(src.name)])
    rx.wait(P + "/del", count=1)
    eg.delete_subscription(DeleteSubscriptionRequest(subscription_id=sub.id))
    res.subs.remove(sub.id)
    time.sleep(3.5)                     # retries would come at ~1 s and ~3 s
    assert rx.count(P + "/del") == 1, "a deleted subscription's pending retries must be dropped"


def test_slow_target_does_not_block_others(eg, res, rx, P):
    rx.script(P + "/slow", default=Reply(200, delay=3.0))
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/slow")),
                               webhook_target(rx.url(P + "/fast"))])
    t0 = time.monotonic()
    put(eg, ch.id, [event(src.name)])
    rx.wait(P + "/fast", count=1, timeout=5)
    assert time.monotonic() - t0 < 2.0, "the fast target waited for the slow one"
    # and a second event still reaches the fast target while the slow one is busy
    put(eg, ch.id, [event(src.name)])
    rx.wait(P + "/fast", count=2, timeout=2)
    rx.wait(P + "/slow", count=2, timeout=10)


def test_duplicate_ids_delivered_again(eg, res, rx, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/dup"))])
    e = event(src.name)
    put(eg, ch.id, [e])
    rx.wait(P + "/dup", count=1)
    put(eg, ch.id, [e])
    recs = rx.wait(P + "/dup", count=2)
    assert all(r.json() == e for r in recs)


def test_official_events_on_default_channel(eg, raw, res, rx, srv, P):
    dch = [c for c in eg.list_channels(ListChannelsRequest(name="default")).items][0].id
    name = "HC.OBS"
    sub = res.subscription(dch, [SubscriptionSource(
        name=name, provider_type="OFFICIAL",
        filter=src_filter(name, subject=[{"op": "StringStartsWith", "values": [P]}]))],
        [webhook_target(rx.url(P + "/obs"))])
    e = event(name, type="object:put", subject=P + "/x.jpg", data={"name": "test01"})
    r = body_of(eg.put_official_events(PutOfficialEventsRequest(
        source_name=name, body=PutEventsReq(events=[CloudEvents(**e)]))))
    assert r["failed_count"] == 0, r
    rec = rx.wait(P + "/obs", count=1)[0]
    assert rec.json() == e
    wait_target(eg, dch, e["id"], tids(sub)[0], "SUCCESS", 1, srv)


def test_size_limits(eg, raw, res, rx, P):
    ch, src, sub = setup(res, [webhook_target(rx.url(P + "/sz"))])
    big = event(src.name, data={"pad": "p" * 70_000})          # > 64 KB: fails only itself
    ok = event(src.name)
    r = put_raw(raw, ch.id, [big, ok])
    assert r.status == 200, r
    b = r.json()
    assert b["failed_count"] == 1, b
    assert b["events"][0]["error_code"] == "EG.00513000" and "error_code" not in b["events"][1]
    # > 256 KB in total: the whole request is rejected
    evs = [event(src.name, data={"pad": "q" * 60_000}) for _ in range(5)]
    r = put_raw(raw, ch.id, evs)
    assert_eg_error(r, 400, "EG.00513000")
    rx.wait(P + "/sz", count=1)
    time.sleep(SETTLE)
    assert [x.json()["id"] for x in rx.requests(P + "/sz")] == [ok["id"]]
