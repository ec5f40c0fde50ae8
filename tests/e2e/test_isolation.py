"""Tenant isolation (docs/errors.md): project B cannot see or modify A's resources;
IDs of A are 404 EG.00514001 in B; B's key on A's path is 403 EG.00512000."""
from huaweicloudsdkeg.v1 import (
    ChannelUpdateReq, ConnectionUpdateReq, CreateSubscriptionTargetRequest, CustomizeSourceUpdateReq,
    DeleteChannelRequest, DeleteConnectionRequest, DeleteEventSourceRequest,
    DeleteSubscriptionRequest, DeleteSubscriptionTargetRequest, ExecuteSubscriptionOperationRequest,
    ListChannelsRequest, ListConnectionsRequest, ListEventSourcesRequest, ListSubscriptionsRequest,
    ListTriggersRequest, ShowDetailOfChannelRequest, ShowDetailOfConnectionRequest,
    ShowDetailOfEventSourceRequest, ShowDetailOfSubscriptionRequest,
    ShowDetailOfSubscriptionTargetRequest, SubscriptionOperateReq, SubscriptionUpdateReq,
    UpdateChannelRequest, UpdateConnectionRequest, UpdateEventSourceRequest,
    UpdateSubscriptionRequest, UpdateSubscriptionSourceRequest,
)

from eglib import assert_eg_error, body_of, sdk_err
from sdkx import custom_source, fg_target, fn_urn, webhook_target


def a_world(res_a, pa):
    ch, src = res_a.app_setup()
    conn = res_a.connection()
    sub = res_a.subscription(ch.id, [custom_source(src.name)],
                             [webhook_target(connection_id=conn.id), fg_target(fn_urn(pa, "iso"))])
    return ch, src, conn, sub


def test_b_cannot_see_or_touch_a(eg_a, eg_b, res_a, res_b, pa):
    ch, src, conn, sub = a_world(res_a, pa)
    snap = {k: body_of(v) for k, v in {
        "ch": eg_a.show_detail_of_channel(ShowDetailOfChannelRequest(channel_id=ch.id)),
        "src": eg_a.show_detail_of_event_source(ShowDetailOfEventSourceRequest(source_id=src.id)),
        "conn": eg_a.show_detail_of_connection(ShowDetailOfConnectionRequest(connection_id=conn.id)),
        "sub": eg_a.show_detail_of_subscription(ShowDetailOfSubscriptionRequest(
            subscription_id=sub.id))}.items()}
    tid, sid = sub.targets[0].id, sub.sources[0].id
    calls = [
        (eg_b.show_detail_of_channel, ShowDetailOfChannelRequest(channel_id=ch.id)),
        (eg_b.update_channel, UpdateChannelRequest(channel_id=ch.id,
                                                   body=ChannelUpdateReq(description="B"))),
        (eg_b.delete_channel, DeleteChannelRequest(channel_id=ch.id)),
        (eg_b.show_detail_of_event_source, ShowDetailOfEventSourceRequest(source_id=src.id)),
        (eg_b.update_event_source, UpdateEventSourceRequest(
            source_id=src.id, body=CustomizeSourceUpdateReq(description="B"))),
        (eg_b.delete_event_source, DeleteEventSourceRequest(source_id=src.id)),
        (eg_b.show_detail_of_connection, ShowDetailOfConnectionRequest(connection_id=conn.id)),
        (eg_b.update_connection, UpdateConnectionRequest(
            connection_id=conn.id, body=ConnectionUpdateReq(description="B"))),
        (eg_b.delete_connection, DeleteConnectionRequest(connection_id=conn.id)),
        (eg_b.show_detail_of_subscription, ShowDetailOfSubscriptionRequest(subscription_id=sub.id)),
        (eg_b.update_subscription, UpdateSubscriptionRequest(
            subscription_id=sub.id, body=SubscriptionUpdateReq(description="B"))),
        (eg_b.delete_subscription, DeleteSubscriptionRequest(subscription_id=sub.id)),
        (eg_b.update_subscription_source, UpdateSubscriptionSourceRequest(
            subscription_id=sub.id, source_id=sid, body=custom_source(src.name))),
        (eg_b.create_subscription_target, CreateSubscriptionTargetRequest(
            subscription_id=sub.id, body=webhook_target())),
        (eg_b.show_detail_of_subscription_target, ShowDetailOfSubscriptionTargetRequest(
            subscription_id=sub.id, target_id=tid)),
        (eg_b.delete_subscription_target, DeleteSubscriptionTargetRequest(
            subscription_id=sub.id, target_id=tid)),
    ]
    for fn, req in calls:
        assert_eg_error(sdk_err(fn, req), 404, "EG.00514001")
    # lists in B do not contain A's resources
    assert ch.id not in [c.id for c in eg_b.list_channels(ListChannelsRequest(limit=1000)).items]
    assert eg_b.list_channels(ListChannelsRequest(name=ch.name)).total == 0
    assert eg_b.list_event_sources(ListEventSourcesRequest(name=src.name)).total == 0
    assert eg_b.list_event_sources(ListEventSourcesRequest(channel_id=ch.id)).total == 0
    assert eg_b.list_connections(ListConnectionsRequest(name=conn.name)).total == 0
    assert eg_b.list_subscriptions(ListSubscriptionsRequest(name=sub.name)).total == 0
    assert eg_b.list_subscriptions(ListSubscriptionsRequest(channel_id=ch.id)).total == 0
    assert eg_b.list_triggers(ListTriggersRequest(func_urn=fn_urn(pa, "iso"))).total == 0
    # ExecuteSubscriptionOperation per-id failure
    r = eg_b.execute_subscription_operation(ExecuteSubscriptionOperationRequest(
        body=SubscriptionOperateReq(subscription_ids=[sub.id], operation="DISABLE")))
    assert r.failed_count == 1 and r.events[0].error_code == "EG.00514001"
    # A's resources are unchanged
    after = {
        "ch": eg_a.show_detail_of_channel(ShowDetailOfChannelRequest(channel_id=ch.id)),
        "src": eg_a.show_detail_of_event_source(ShowDetailOfEventSourceRequest(source_id=src.id)),
        "conn": eg_a.show_detail_of_connection(ShowDetailOfConnectionRequest(connection_id=conn.id)),
        "sub": eg_a.show_detail_of_subscription(ShowDetailOfSubscriptionRequest(
            subscription_id=sub.id))}
    assert {k: body_of(v) for k, v in after.items()} == snap


def test_b_cannot_use_a_channel_or_source(eg_b, res_a, res_b, pa):
    ch, src, conn, sub = a_world(res_a, pa)
    name = "iso-src-" + ch.id[:8]
    e = sdk_err(res_b.source, ch.id, name=name)
    assert_eg_error(e, 400, "EG.00513005")
    e = sdk_err(res_b.subscription, ch.id, [custom_source(src.name)], [webhook_target()])
    assert_eg_error(e, 400, "EG.00513005")
    chb = res_b.channel()
    # A's source name is not a custom source of B
    e = sdk_err(res_b.subscription, chb.id, [custom_source(src.name)], [webhook_target()])
    assert_eg_error(e, 400, "EG.00513000")
    # A's connection id is not usable in B
    srcb = res_b.source(chb.id)
    e = sdk_err(res_b.subscription, chb.id, [custom_source(srcb.name)],
                [webhook_target(connection_id=conn.id)])
    assert e.status_code in (400, 404)
    assert eg_b.list_subscriptions(ListSubscriptionsRequest(channel_id=chb.id)).total == 0


def test_same_names_allowed_in_other_project(res_a, res_b):
    ca = res_a.channel()
    cb = res_b.channel(name=ca.name)
    assert cb.name == ca.name and cb.id != ca.id
    sa = res_a.source(ca.id)
    sb = res_b.source(cb.id, name=sa.name)
    assert sb.id != sa.id


def test_b_key_on_a_path_is_403(raw_b, eg_a, pa):
    """A valid signature by B over A's project path."""
    for method, path, body in [("GET", f"/v1/{pa}/channels", None),
                               ("POST", f"/v1/{pa}/channels", {"name": "iso-by-b"}),
                               ("GET", f"/v1/{pa}/quotas", None)]:
        req = raw_b.prepare(method, path, body=body, project_header=False)
        req.sign(raw_b.ak, raw_b.sk)
        assert_eg_error(raw_b.send(req), 403, "EG.00512000")
    assert eg_a.list_channels(ListChannelsRequest(name="iso-by-b")).total == 0


def test_secrets_masked_in_lists_too(eg_a, res_a, raw_a):
    """Secrets never leave the server, in list responses either."""
    from sdkx import apigw_target
    ch = res_a.channel()
    res_a.source(ch.id, type="RABBITMQ", detail={"instance_id": "amqp://127.0.0.1:9",
                                                  "queue_name": "q", "user_name": "u",
                                                  "password": "list-rabbit-pass"})
    src = res_a.source(ch.id)
    res_a.kafka_connection()
    res_a.subscription(ch.id, [custom_source(src.name)], [apigw_target(secret="list-apigw-sec")])
    for what in ("sources", "connections", "subscriptions"):
        r = raw_a.call("GET", f"/v1/{{p}}/{what}", query={"limit": 1000})
        assert r.status == 200
        for secret in (b"list-rabbit-pass", b"kafka-pass-e2e", b"list-apigw-sec"):
            assert secret not in r.body, (what, secret)
    r = raw_a.call("GET", "/v1/{p}/sources", query={"channel_id": ch.id, "limit": 1000}).json()
    rabbit = [i for i in r["items"] if i["type"] == "RABBITMQ"][0]
    assert rabbit["detail"]["password"] == "******"
