"""Cross-account publishing is enforced, not just stored (issue #11, part 2).

* PutEvents on another project's channel path: 403 EG.00512000 unless that channel has
  `cross_account` true and a policy that allows the caller's account (domain id) to publish.
  An unknown channel of another project answers the same 403 (no probing).
* An HC.EG target forwarding into another project's channel obeys the same rule: when refused
  the attempt gives up with the reason in the trace and nothing is written to that channel.

Runs its own server (both credentials, webhook receiver) on the session's store choice.
"""
from __future__ import annotations

import time

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkeg.v1 import (
    ChannelUpdateReq, CloudEvents, EgClient, PutEventsReq, PutEventsRequest,
    ShowDetailOfEventTraceRequest, UpdateChannelRequest,
)

from dataplane import DataServer, event, wait_until
from eglib import assert_eg_error, body_of, sdk_err, uniq
from receivers import Receiver
from sdkx import Resources, custom_source, eg_target, webhook_target

SETTLE = 1.5


@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def srv():
    s = DataServer()
    s.start()
    yield s
    problem = s.stop()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def world(srv):
    ra = Resources(srv.sdk("a"), srv.raw("a"))
    rb = Resources(srv.sdk("b"), srv.raw("b"))
    yield srv, ra, rb
    ra.cleanup()
    rb.cleanup()


def client(srv, cred, project):
    """The official SDK with one account's keys, addressing `project` (the path and
    X-Project-Id): how a caller publishes into another project's channel."""
    cfg = HttpConfig.get_default_config()
    cfg.timeout = (5, 30)
    return (EgClient.new_builder().with_http_config(cfg)
            .with_credentials(BasicCredentials(cred.ak, cred.sk, project))
            .with_endpoint(srv.base_url).build())


def policy(project, channel_name, *accounts, effect="Allow"):
    return {"s1": {"Sid": "allow_account_to_put_events", "Effect": effect,
                   "Principal": {"p1": {"IAM": list(accounts)}},
                   "Action": "eg:channels:putEvents",
                   "Resource": f"urn:eg:region-1:{project}:channel:{channel_name}"}}


def put(eg, channel_id, events):
    return eg.put_events(PutEventsRequest(channel_id=channel_id, body=PutEventsReq(
        events=[CloudEvents(**e) for e in events])))


def b_channel_with_hook(rb, rx, path, source_name=None):
    """A channel of B with a custom source and a webhook subscription on it."""
    ch = rb.channel()
    src = rb.source(ch.id, name=source_name)
    rb.subscription(ch.id, [custom_source(src.name)], [webhook_target(rx.url(path))])
    return ch, src


def set_access(rb, ch, cross_account, pol):
    rb.eg.update_channel(UpdateChannelRequest(channel_id=ch.id, body=ChannelUpdateReq(
        cross_account=cross_account, policy=pol)))


def test_put_events_into_another_projects_channel(world, rx):
    srv, ra, rb = world
    a, b = srv.a, srv.b
    hook = "/" + uniq("xacct")
    ch, src = b_channel_with_hook(rb, rx, hook)
    a_on_b = client(srv, a, b.project)

    def refused(channel_id):
        e = event(src.name)
        assert_eg_error(sdk_err(put, a_on_b, channel_id, [e]), 403, "EG.00512000")
        return e["id"]

    # closed by default, and for an unknown channel of B
    refused_ids = [refused(ch.id), refused("00000000-0000-4000-8000-000000000000")]
    # policy alone is not enough; the switch alone is not enough; another account is not enough
    set_access(rb, ch, False, policy(b.project, ch.name, a.domain))
    refused_ids.append(refused(ch.id))
    set_access(rb, ch, True, {})
    refused_ids.append(refused(ch.id))
    set_access(rb, ch, True, policy(b.project, ch.name, b.domain))
    refused_ids.append(refused(ch.id))
    set_access(rb, ch, True, policy(b.project, "another-channel", a.domain))
    refused_ids.append(refused(ch.id))
    # a Deny for A wins over an Allow for everyone
    pol = policy(b.project, ch.name, "*")
    pol.update({"d": dict(policy(b.project, ch.name, a.domain, effect="Deny")["s1"])})
    set_access(rb, ch, True, pol)
    refused_ids.append(refused(ch.id))

    # allowed: A publishes into B's channel, B's subscription delivers it
    set_access(rb, ch, True, policy(b.project, ch.name, a.domain))
    e = event(src.name, data={"from": "a"})
    r = body_of(put(a_on_b, ch.id, [e]))
    assert r["failed_count"] == 0, r
    got = rx.wait(hook, count=1)[0].json()
    assert got["id"] == e["id"] and got["data"] == {"from": "a"}

    # A's key still cannot do anything else on B's path
    from huaweicloudsdkeg.v1 import ListChannelsRequest
    assert_eg_error(sdk_err(a_on_b.list_channels, ListChannelsRequest()), 403, "EG.00512000")

    # closing the channel again takes effect at once
    set_access(rb, ch, False, policy(b.project, ch.name, a.domain))
    refused_ids.append(refused(ch.id))
    time.sleep(SETTLE)
    ids = [r.json()["id"] for r in rx.requests(hook)]
    assert ids == [e["id"]], f"refused events must not be delivered: {ids}"
    assert not set(refused_ids) & set(ids)


def test_eg_target_into_another_projects_channel(world, rx):
    srv, ra, rb = world
    a, b = srv.a, srv.b
    hook = "/" + uniq("xfwd")
    # A: channel + source + subscription forwarding to B's channel
    cha = ra.channel()
    srca = ra.source(cha.id)
    chb, _ = b_channel_with_hook(rb, rx, hook, source_name=srca.name)
    sub = ra.subscription(cha.id, [custom_source(srca.name)], [eg_target(b.project, chb.id)])
    tid = sub.targets[0].id

    def target_of(eid):
        tr = body_of(ra.eg.show_detail_of_event_trace(ShowDetailOfEventTraceRequest(
            trace_id=eid, channel_id=cha.id)))
        for d in tr.get("deliverList", []):
            for t in d.get("deliverTargetList", []):
                if t["deliverTargetId"] == tid:
                    return t
        raise AssertionError(f"no trace of target {tid} yet: {tr}")

    # refused: gives up at once with the reason, nothing written to B's channel
    e1 = event(srca.name, data={"try": 1})
    assert body_of(put(ra.eg, cha.id, [e1]))["failed_count"] == 0

    def gave_up():
        t = target_of(e1["id"])
        assert t["deliverStatus"] == "FAILED", t
        assert len(t["deliverDetailList"]) == 1, t
        code = t["deliverDetailList"][0]["deliverRspCode"]
        assert "EG.00512000" in code and "cross_account" in code, code
        return t
    wait_until(gave_up, 10, "the refused forward given up", srv)
    time.sleep(SETTLE)
    assert rx.count(hook) == 0, "a refused forward must write nothing into B's channel"

    # allowed by B's policy: forwarded and delivered by B's subscription
    set_access(rb, chb, True, policy(b.project, chb.name, a.domain))
    e2 = event(srca.name, data={"try": 2})
    assert body_of(put(ra.eg, cha.id, [e2]))["failed_count"] == 0
    got = rx.wait(hook, count=1)[0].json()
    assert got["id"] == e2["id"] and got["data"] == {"try": 2}
    wait_until(lambda: target_of(e2["id"])["deliverStatus"] == "SUCCESS", 10,
               "the allowed forward succeeded", srv)
    time.sleep(SETTLE)
    assert [r.json()["id"] for r in rx.requests(hook)] == [e2["id"]]
