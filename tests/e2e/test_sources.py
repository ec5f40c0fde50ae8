"""Custom event sources (ops 23–27)."""
import time

import pytest
from huaweicloudsdkeg.v1 import (
    CreateEventSourceRequest, CustomizeSourceCreateReq, CustomizeSourceUpdateReq,
    DeleteChannelRequest, DeleteEventSourceRequest, ListChannelsRequest, ListEventSourcesRequest,
    ListQuotasRequest, RocketMqDetail, ShowDetailOfEventSourceRequest, UpdateEventSourceRequest,
)

from eglib import MASK, TIME_RE, UUID_RE, assert_eg_error, sdk_err, uniq


def create_src(eg, **kw):
    return eg.create_event_source(CreateEventSourceRequest(body=CustomizeSourceCreateReq(**kw)))


def rabbit_detail():
    return {"instance_id": "amqp://127.0.0.1:9", "vhost_name": "/", "queue_name": "q1",
            "user_name": "ruser", "password": "rabbit-pass-e2e"}


def rocket_detail(**kw):
    d = dict(instance_id="rmq-inst", group="g1", topic="t1", access_key="rmq-ak",
             secret_key="rmq-sk-e2e", namesrv_address="127.0.0.1:9", ssl_enable=False,
             enable_acl=True)
    d.update(kw)
    return RocketMqDetail(**d)


def assert_broker_unreachable(eg, src, broker, secret):
    """A RABBITMQ or ROCKETMQ source whose broker refuses connections: ERROR from the start, and soon with
    the connection failure (naming the broker, never the password) as the last failure."""
    assert src.status == "ERROR", src.status
    assert src.error_info.error_code == "EG.00511000"
    deadline = time.monotonic() + 10
    while True:
        g = eg.show_detail_of_event_source(ShowDetailOfEventSourceRequest(source_id=src.id))
        assert g.status == "ERROR", g.status
        assert g.error_info.error_code == "EG.00511000"
        if broker in g.error_info.error_detail:
            break
        assert time.monotonic() < deadline, g.error_info.error_detail
        time.sleep(0.1)
    assert secret not in g.error_info.error_detail
    assert secret.encode() not in g.raw_content


def test_application_source_crud(eg_a, res_a):
    ch = res_a.channel()
    name = uniq("src")
    s = res_a.source(ch.id, name=name, description="app source")
    assert UUID_RE.match(s.id)
    assert s.name == name and s.label == name
    assert s.description == "app source"
    assert s.provider_type == "CUSTOM"
    assert s.type == "APPLICATION"          # default
    assert s.status == "RUNNING"
    assert s.channel_id == ch.id and s.channel_name == ch.name
    assert s.event_types == []
    assert TIME_RE.match(s.created_time) and TIME_RE.match(s.updated_time)
    assert s.error_info is not None and not s.error_info.error_code

    g = eg_a.show_detail_of_event_source(ShowDetailOfEventSourceRequest(source_id=s.id))
    assert (g.id, g.name, g.channel_id, g.type, g.status) == (s.id, name, ch.id, "APPLICATION",
                                                              "RUNNING")

    u = eg_a.update_event_source(UpdateEventSourceRequest(
        source_id=s.id, body=CustomizeSourceUpdateReq(description="changed")))
    assert u.description == "changed" and u.name == name and u.channel_id == ch.id
    assert u.created_time == s.created_time

    lst = eg_a.list_event_sources(ListEventSourcesRequest(channel_id=ch.id))
    assert lst.total == 1 and lst.items[0].id == s.id
    lst = eg_a.list_event_sources(ListEventSourcesRequest(name=name, provider_type="CUSTOM"))
    assert [i.id for i in lst.items] == [s.id]
    lst = eg_a.list_event_sources(ListEventSourcesRequest(fuzzy_label=name[4:].upper()))
    assert [i.id for i in lst.items] == [s.id]

    assert eg_a.delete_event_source(DeleteEventSourceRequest(source_id=s.id)).status_code == 204
    res_a.sources.remove(s.id)
    assert_eg_error(sdk_err(eg_a.show_detail_of_event_source,
                            ShowDetailOfEventSourceRequest(source_id=s.id)), 404, "EG.00514001")
    assert eg_a.list_event_sources(ListEventSourcesRequest(channel_id=ch.id)).total == 0


def test_rabbitmq_source_masks_password(eg_a, res_a):
    ch = res_a.channel()
    s = res_a.source(ch.id, type="RABBITMQ", detail=rabbit_detail())
    assert s.type == "RABBITMQ"
    # the broker (127.0.0.1:9) refuses connections: ERROR with that failure, never RUNNING
    assert_broker_unreachable(eg_a, s, "127.0.0.1:9", "rabbit-pass-e2e")
    assert s.detail["password"] == MASK
    assert s.detail["queue_name"] == "q1" and s.detail["user_name"] == "ruser"
    g = eg_a.show_detail_of_event_source(ShowDetailOfEventSourceRequest(source_id=s.id))
    assert g.detail["password"] == MASK
    assert b"rabbit-pass-e2e" not in g.raw_content and b"rabbit-pass-e2e" not in s.raw_content


def test_rocketmq_source_masks_secret_and_update_keeps_it(eg_a, res_a, raw_a):
    ch = res_a.channel()
    s = res_a.source(ch.id, type="ROCKETMQ", detail=rocket_detail())
    assert s.type == "ROCKETMQ"
    assert s.detail["secret_key"] == MASK
    assert s.detail["group"] == "g1" and s.detail["topic"] == "t1"
    assert s.detail["enable_acl"] is True
    # update with the mask keeps the stored secret; other fields change
    u = eg_a.update_event_source(UpdateEventSourceRequest(source_id=s.id, body=CustomizeSourceUpdateReq(
        detail=rocket_detail(secret_key=MASK, topic="t2"))))
    assert u.detail["topic"] == "t2" and u.detail["secret_key"] == MASK
    # Its name server (127.0.0.1:9) refuses connections: ERROR with the reason, never RUNNING.
    assert_broker_unreachable(eg_a, u, "127.0.0.1:9", "rmq-sk-e2e")
    listed = eg_a.list_event_sources(ListEventSourcesRequest(channel_id=ch.id)).items
    assert [i.status for i in listed if i.id == s.id] == ["ERROR"]
    raw = raw_a.call("GET", "/v1/{p}/sources/" + s.id)
    assert b"rmq-sk-e2e" not in raw.body


@pytest.mark.parametrize("detail", [
    {"group": "g1", "namesrv_address": "127.0.0.1:9"},            # no topic
    {"topic": "t1", "namesrv_address": "127.0.0.1:9"},            # no group
], ids=["no-topic", "no-group"])
def test_rocketmq_source_missing_required_detail(eg_a, res_a, detail):
    ch = res_a.channel()
    name = uniq("src")
    e = sdk_err(create_src, eg_a, name=name, channel_id=ch.id, type="ROCKETMQ", detail=detail)
    assert_eg_error(e, 400, "EG.00513000")
    assert eg_a.list_event_sources(ListEventSourcesRequest(name=name)).total == 0


def test_rocketmq_acl_needs_keys(eg_a, res_a):
    ch = res_a.channel()
    e = sdk_err(create_src, eg_a, name=uniq("src"), channel_id=ch.id, type="ROCKETMQ",
                detail={"group": "g", "topic": "t", "namesrv_address": "127.0.0.1:9",
                        "enable_acl": True})
    assert_eg_error(e, 400, "EG.00513000")


def test_rabbitmq_needs_queue(eg_a, res_a):
    ch = res_a.channel()
    d = rabbit_detail()
    del d["queue_name"]
    e = sdk_err(create_src, eg_a, name=uniq("src"), channel_id=ch.id, type="RABBITMQ", detail=d)
    assert_eg_error(e, 400, "EG.00513000")


def test_unknown_type(eg_a, res_a):
    ch = res_a.channel()
    e = sdk_err(create_src, eg_a, name=uniq("src"), channel_id=ch.id, type="KAFKA")
    assert_eg_error(e, 400, "EG.00513000")


def _default_id(eg):
    return [c for c in eg.list_channels(ListChannelsRequest(name="default")).items][0].id


@pytest.mark.parametrize("which", ["missing", "default", "unknown"])
def test_bad_channel_is_513005(eg_a, which):
    cid = {"missing": None, "default": _default_id(eg_a),
           "unknown": "00000000-0000-4000-8000-000000000000"}[which]
    name = uniq("src")
    e = sdk_err(create_src, eg_a, name=name, channel_id=cid)
    assert_eg_error(e, 400, "EG.00513005")
    assert eg_a.list_event_sources(ListEventSourcesRequest(name=name)).total == 0


@pytest.mark.parametrize("name", ["UpperCase", "hc.mine", "-lead", "a b", "x" * 129, ""])
def test_bad_names(eg_a, res_a, name):
    ch = res_a.channel()
    e = sdk_err(create_src, eg_a, name=name, channel_id=ch.id)
    assert_eg_error(e, 400, "EG.00513000")
    assert eg_a.list_event_sources(ListEventSourcesRequest(channel_id=ch.id)).total == 0


def test_name_128_ok(res_a):
    ch = res_a.channel()
    s = res_a.source(ch.id, name="a" * 128)
    assert s.name == "a" * 128


def test_duplicate_name_even_across_channels(eg_a, res_a):
    ch1, ch2 = res_a.channel(), res_a.channel()
    s = res_a.source(ch1.id)
    e = sdk_err(create_src, eg_a, name=s.name, channel_id=ch2.id)
    assert_eg_error(e, 400, "EG.00513001")
    assert eg_a.list_event_sources(ListEventSourcesRequest(channel_id=ch2.id)).total == 0


def test_channel_with_source_cannot_be_deleted(eg_a, res_a):
    ch, s = res_a.app_setup()
    e = sdk_err(eg_a.delete_channel, DeleteChannelRequest(channel_id=ch.id))
    assert_eg_error(e, 409, "EG.00514002")
    assert eg_a.list_channels(ListChannelsRequest(name=ch.name)).total == 1
    eg_a.delete_event_source(DeleteEventSourceRequest(source_id=s.id))
    res_a.sources.remove(s.id)
    assert eg_a.delete_channel(DeleteChannelRequest(channel_id=ch.id)).status_code == 204
    res_a.channels.remove(ch.id)


def test_update_unknown_404(eg_a):
    e = sdk_err(eg_a.update_event_source, UpdateEventSourceRequest(
        source_id="00000000-0000-4000-8000-000000000000",
        body=CustomizeSourceUpdateReq(description="x")))
    assert_eg_error(e, 404, "EG.00514001")
    e = sdk_err(eg_a.delete_event_source, DeleteEventSourceRequest(
        source_id="00000000-0000-4000-8000-000000000000"))
    assert_eg_error(e, 404, "EG.00514001")


def test_rabbitmq_source_quota(eg_b, res_b):
    """SOURCE_RABBITMQ default quota 10 (docs/limits.md). Project B is otherwise light."""
    q = eg_b.list_quotas(ListQuotasRequest(type="SOURCE_RABBITMQ")).quotas.resources[0]
    assert q.quota == 10
    ch = res_b.channel()
    for _ in range(q.quota - q.used):
        res_b.source(ch.id, type="RABBITMQ", detail=rabbit_detail())
    assert eg_b.list_quotas(ListQuotasRequest(type="SOURCE_RABBITMQ")).quotas.resources[0].used \
        == q.quota
    name = uniq("src")
    e = sdk_err(create_src, eg_b, name=name, channel_id=ch.id, type="RABBITMQ",
                detail=rabbit_detail())
    assert_eg_error(e, 403, "EG.00514003")
    # APPLICATION sources are not limited by the RABBITMQ quota
    res_b.source(ch.id, name=name)
