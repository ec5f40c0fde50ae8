"""Subscriptions (ops 1–11), filter validation (docs/filter-rules.md), transform validation
(docs/transforms.md), target kinds, bindings (409) and quotas."""
import copy
import json

import pytest
from huaweicloudsdkeg.v1 import (
    CreateSubscriptionRequest, CreateSubscriptionTargetRequest, DeadLetterQueue,
    DeleteChannelRequest, DeleteConnectionRequest, DeleteEventSourceRequest,
    DeleteSubscriptionRequest, DeleteSubscriptionTargetRequest, ExecuteSubscriptionOperationRequest,
    ListChannelsRequest, ListEventSourcesRequest, ListQuotasRequest, ListSubscriptionsRequest,
    ShowDetailOfSubscriptionRequest, ShowDetailOfSubscriptionTargetRequest, SubscriptionCreateReq,
    SubscriptionOperateReq, SubscriptionSource, SubscriptionTarget, SubscriptionUpdateReq, TransForm,
    UpdateSubscriptionRequest, UpdateSubscriptionSourceRequest, UpdateSubscriptionTargetRequest,
)

from eglib import MASK, TIME_RE, assert_eg_error, body_of, sdk_err, uniq
from sdkx import (
    ORIGINAL, apigw_target, custom_source, eg_target, fg_target, fn_urn, kafka_target, smn_target,
    src_filter, webhook_target, workflow_target,
)

BOGUS = "00000000-0000-4000-8000-000000000000"


def show(eg, sid):
    return eg.show_detail_of_subscription(ShowDetailOfSubscriptionRequest(subscription_id=sid))


def create(eg, **kw):
    return eg.create_subscription(CreateSubscriptionRequest(body=SubscriptionCreateReq(**kw)))


def count_by_name(eg, name):
    return eg.list_subscriptions(ListSubscriptionsRequest(name=name)).total


def default_channel_id(eg):
    return [c for c in eg.list_channels(ListChannelsRequest(name="default")).items][0].id


# ----------------------------------------------------------------------------- target kinds

def k_webhook(res, pa, ch):
    return webhook_target("https://hooks.example.com/path?x=1")


def k_webhook_conn(res, pa, ch):
    return webhook_target("http://10.0.0.1:8080/hook", connection_id=res.connection().id)


def k_fg(res, pa, ch):
    return fg_target(fn_urn(pa), invoke_type="ASYNC")


def k_workflow(res, pa, ch):
    return workflow_target("wf-0001")


def k_smn(res, pa, ch):
    return smn_target(pa)


def k_eg(res, pa, ch):
    return eg_target(pa, res.channel().id)


def k_kafka(res, pa, ch):
    return kafka_target(res.kafka_connection().id)


def k_apigw(res, pa, ch):
    return apigw_target()


KINDS = {"WEBHOOK": k_webhook, "WEBHOOK+conn": k_webhook_conn, "HC.FunctionGraph": k_fg,
         "HC.FunctionFlow": k_workflow, "HC.SMN": k_smn, "HC.EG": k_eg, "HC.Kafka": k_kafka,
         "HC.APIGW": k_apigw}


@pytest.mark.parametrize("kind", list(KINDS))
def test_create_with_each_target_kind(eg_a, res_a, pa, kind):
    ch, src = res_a.app_setup()
    target = KINDS[kind](res_a, pa, ch)
    filt = src_filter(src.name, type=[{"op": "StringIn", "values": ["order.created"]}],
                      data={"amount": [{"op": "NumberGreaterThan", "value": 10}]})
    name = uniq("sub")
    s = res_a.subscription(ch.id, [custom_source(src.name, filt)], [target], name=name,
                           description="kinds")
    b = body_of(s)
    assert s.name == name and s.description == "kinds"
    assert s.status == "ENABLED" and s.type == "EVENT"
    assert s.channel_id == ch.id and s.channel_name == ch.name
    assert b["used"] == []
    assert TIME_RE.match(s.created_time) and TIME_RE.match(s.updated_time)
    assert len(b["sources"]) == 1
    so = b["sources"][0]
    assert so["name"] == src.name and so["provider_type"] == "CUSTOM" and so["id"]
    assert so["filter"] == filt
    assert TIME_RE.match(so["created_time"])
    assert len(b["targets"]) == 1
    t = b["targets"][0]
    assert t["name"] == target.name and t["provider_type"] == target.provider_type
    assert t["id"] and TIME_RE.match(t["created_time"])
    assert t["retry_times"] == 16                 # default [dec]
    assert t["transform"]["type"] == "ORIGINAL"
    if kind == "HC.APIGW":
        hp = t["apigw_detail"]["invocation_http_parameters"]["header_parameters"]
        hp = {h["key"]: h for h in hp}
        assert hp["X-Secret"]["value"] == MASK and hp["X-Secret"]["is_value_secret"] is True
        assert hp["X-Plain"]["value"] == "plain-value"
        assert b"s3cr3t-value" not in s.raw_content
    if kind == "HC.Kafka":
        assert t["kafka_detail"]["topic"] == "orders"
        assert t["kafka_detail"]["keyTransform"]["type"] == "CONSTANT"
        assert t["connection_id"] == target.connection_id
    if kind == "HC.EG":
        assert t["eg_detail"]["target_channel_id"] == target.eg_detail.target_channel_id
        assert t["eg_detail"]["target_project_id"] == pa
    if kind == "HC.SMN":
        assert t["smn_detail"]["urn"] == target.smn_detail.urn
    if kind in ("HC.FunctionGraph", "HC.FunctionFlow", "WEBHOOK"):
        assert t["detail"] == target.detail
    g = body_of(show(eg_a, s.id))
    for k in ("id", "name", "status", "channel_id", "sources", "targets", "created_time"):
        assert g[k] == b[k], k


def test_create_rocketmq_target_raw(raw_a, res_a):
    ch, src = res_a.app_setup()
    r = raw_a.call("POST", "/v1/{p}/connections", body={
        "name": uniq("rmq"), "vpc_id": "v", "subnet_id": "s", "type": "ROCKETMQ",
        "rocketmq_detail": {"instance_id": "rmq-1", "addr": "127.0.0.1:9", "use_tls": False,
                            "enable_acl": "true", "user_name": "u", "password": "rmq-conn-pass"}})
    assert r.status == 200, r
    res_a.conns.append(r.json()["id"])
    assert r.json()["rocketmq_detail"]["password"] == MASK
    name = uniq("sub")
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body={
        "name": name, "channel_id": ch.id,
        "sources": [{"name": src.name, "provider_type": "CUSTOM", "filter": src_filter(src.name)}],
        "targets": [{"name": "HC.RocketMQ", "provider_type": "OFFICIAL",
                     "connection_id": r.json()["id"],
                     "rocketmq_detail": {"topic": "t1", "key_transform": {"type": "CONSTANT",
                                                                          "value": "k"}},
                     "transform": {"type": "ORIGINAL", "value": ""}}]})
    assert r.status == 200, r
    res_a.subs.append(r.json()["id"])
    t = r.json()["targets"][0]
    assert t["name"] == "HC.RocketMQ" and t["rocketmq_detail"]["topic"] == "t1"


def test_variable_transform_and_client_ids(eg_a, res_a):
    ch, src = res_a.app_setup()
    sid, tid = "s" + "0" * 31, "t" + "1" * 40
    tr = TransForm(type="VARIABLE", value=json.dumps({"amt": "$.data.amount", "k": "const"}),
                   template='{"amount": ${amt}, "k": "${k}"}')
    s = res_a.subscription(ch.id, [custom_source(src.name, id=sid)],
                           [webhook_target(transform=tr, id=tid, retry_times=0)])
    b = body_of(s)
    assert b["sources"][0]["id"] == sid and b["targets"][0]["id"] == tid
    assert b["targets"][0]["retry_times"] == 0
    assert b["targets"][0]["transform"] == {"type": "VARIABLE", "value": tr.value,
                                            "template": tr.template}


def test_official_source_subscription_on_default_channel(eg_a, res_a):
    dch = default_channel_id(eg_a)
    s = res_a.subscription(dch, [SubscriptionSource(name="HC.OBS", provider_type="OFFICIAL",
                                                    filter=src_filter("HC.OBS"))],
                           [webhook_target()])
    assert s.channel_name == "default"
    srcs = eg_a.list_event_sources(ListEventSourcesRequest(provider_type="OFFICIAL", limit=1000))
    obs = [x for x in srcs.items if x.name == "HC.OBS"]
    assert len(obs) == 1 and obs[0].provider_type == "OFFICIAL" and obs[0].channel_name == "default"
    e = sdk_err(eg_a.delete_event_source, DeleteEventSourceRequest(source_id=obs[0].id))
    assert_eg_error(e, 403, "EG.00514004")


def test_official_source_on_custom_channel_rejected(eg_a, res_a):
    ch = res_a.channel()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[SubscriptionSource(
        name="HC.OBS", provider_type="OFFICIAL", filter=src_filter("HC.OBS"))],
        targets=[webhook_target()])
    assert_eg_error(e, 400, {"EG.00513000", "EG.00513005"})
    assert count_by_name(eg_a, name) == 0


# ----------------------------------------------------------------------------- validation

def big_filter(src, size):
    """A filter whose compact serialization is exactly `size` bytes."""
    f = src_filter(src, type=[{"op": "StringIn", "values": [""]}])
    base = len(json.dumps(f, separators=(",", ":")))
    f["type"][0]["values"][0] = "x" * (size - base)
    assert len(json.dumps(f, separators=(",", ":"))) == size
    return f


FILTER_CASES = {
    "no-source": lambda s: {"type": [{"op": "StringIn", "values": ["a"]}]},
    "oversized": lambda s: big_filter(s, 2049),
    "unknown-top-key": lambda s: src_filter(s, id=[{"op": "StringIn", "values": ["a"]}]),
    "source-not-stringin": lambda s: {"source": [{"op": "StringStartsWith", "values": [s]}]},
    "source-and-block": lambda s: {"source": {"and": [{"op": "StringIn", "values": [s]}]}},
    "unknown-op": lambda s: src_filter(s, type=[{"op": "StringEquals", "values": ["a"]}]),
    "op-wrong-case": lambda s: src_filter(s, type=[{"op": "stringin", "values": ["a"]}]),
    "six-data-fields": lambda s: src_filter(s, data={f"f{i}": [{"op": "IsNotNull"}]
                                                     for i in range(6)}),
    "depth-six": lambda s: src_filter(s, data={"a": {"b": {"c": {"d": {"e": {"f": [
        {"op": "IsNotNull"}]}}}}}}),
    "six-conditions": lambda s: src_filter(s, type=[{"op": "StringIn", "values": [str(i)]}
                                                    for i in range(6)]),
    "zero-conditions": lambda s: src_filter(s, type=[]),
    "numberin-strings": lambda s: src_filter(s, data={"n": [{"op": "NumberIn", "values": ["1"]}]}),
    "range-low-gt-high": lambda s: src_filter(s, data={"n": [{"op": "NumberInRange",
                                                              "values": [[5, 1]]}]}),
    "compare-no-value": lambda s: src_filter(s, data={"n": [{"op": "NumberLessThan"}]}),
    "empty-values": lambda s: src_filter(s, type=[{"op": "StringIn", "values": []}]),
    "extra-cond-key": lambda s: src_filter(s, type=[{"op": "StringIn", "values": ["a"],
                                                     "x": 1}]),
    "data-not-object": lambda s: src_filter(s, data=[{"op": "IsNotNull"}]),
}


@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_invalid_filter_513004(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id,
                sources=[custom_source(src.name, FILTER_CASES[case](src.name))],
                targets=[webhook_target()])
    assert_eg_error(e, 400, "EG.00513004")
    assert count_by_name(eg_a, name) == 0


def test_filter_not_object_raw(raw_a, res_a, eg_a):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body={
        "name": name, "channel_id": ch.id,
        "sources": [{"name": src.name, "provider_type": "CUSTOM", "filter": [1, 2]}],
        "targets": [{"name": "WEBHOOK", "provider_type": "CUSTOM",
                     "detail": {"url": "http://a.example/"}, "transform": {"type": "ORIGINAL"}}]})
    assert_eg_error(r, 400, "EG.00513004")
    assert count_by_name(eg_a, name) == 0


def test_filter_2048_compact_accepted_even_pretty(raw_a, res_a):
    """Sizes are measured on compact JSON; pretty-printing never pushes it over."""
    ch, src = res_a.app_setup()
    f = big_filter(src.name, 2048)
    body = {"name": uniq("sub"), "channel_id": ch.id,
            "sources": [{"name": src.name, "provider_type": "CUSTOM", "filter": f}],
            "targets": [{"name": "WEBHOOK", "provider_type": "CUSTOM",
                         "detail": {"url": "http://a.example/"}, "transform": {"type": "ORIGINAL"}}]}
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=json.dumps(body, indent=4))
    assert r.status == 200, r
    res_a.subs.append(r.json()["id"])
    assert r.json()["sources"][0]["filter"] == f


def test_filter_duplicate_key_last_wins(raw_a, res_a):
    """docs/filter-rules.md: the last occurrence of a duplicated key wins (before validation)."""
    ch, src = res_a.app_setup()
    raw_filter = ('{"source": [{"op": "StringIn", "values": ["x"]}], "type": [{"op": "Bogus"}],'
                  ' "type": [{"op": "StringIn", "values": ["t"]}], "source": [{"op": "StringIn",'
                  ' "values": ["%s"]}]}' % src.name)
    body = ('{"name": "%s", "channel_id": "%s", "sources": [{"name": "%s", "provider_type": '
            '"CUSTOM", "filter": %s}], "targets": [{"name": "WEBHOOK", "provider_type": "CUSTOM", '
            '"detail": {"url": "http://a.example/"}, "transform": {"type": "ORIGINAL"}}]}'
            % (uniq("sub"), ch.id, src.name, raw_filter))
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=body)
    assert r.status == 200, r
    res_a.subs.append(r.json()["id"])
    assert r.json()["sources"][0]["filter"] == {
        "source": [{"op": "StringIn", "values": [src.name]}],
        "type": [{"op": "StringIn", "values": ["t"]}]}


def _t(**kw):
    kw.setdefault("transform", ORIGINAL)
    return SubscriptionTarget(**kw)


TARGET_CASES = {
    "webhook-not-url": lambda c: webhook_target("not a url"),
    "webhook-ftp": lambda c: webhook_target("ftp://example.com/x"),
    "webhook-no-host": lambda c: webhook_target("http://"),
    "webhook-relative": lambda c: webhook_target("/hook"),
    "webhook-no-detail": lambda c: _t(name="WEBHOOK", provider_type="CUSTOM"),
    "apigw-bad-url": lambda c: apigw_target(url="gopher://x"),
    "fg-no-urn": lambda c: _t(name="HC.FunctionGraph", provider_type="OFFICIAL",
                              detail={"invoke_type": "SYNC", "agency_name": "a"}),
    "workflow-no-id": lambda c: _t(name="HC.FunctionFlow", provider_type="OFFICIAL",
                                   detail={"agency_name": "a"}),
    "smn-no-detail": lambda c: _t(name="HC.SMN", provider_type="OFFICIAL"),
    "eg-no-detail": lambda c: _t(name="HC.EG", provider_type="OFFICIAL"),
    "kafka-no-detail": lambda c: _t(name="HC.Kafka", provider_type="OFFICIAL"),
    "unknown-kind": lambda c: _t(name="SomethingElse", provider_type="OFFICIAL"),
    "detail-over-1024": lambda c: webhook_target("http://a.example/" + "x" * 1100),
    "eg-own-channel": lambda c: eg_target(c["pa"], c["ch"]),
}


@pytest.mark.parametrize("case", list(TARGET_CASES))
def test_invalid_target_513003(eg_a, res_a, pa, case):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[TARGET_CASES[case]({"pa": pa, "ch": ch.id})])
    assert_eg_error(e, 400, "EG.00513003")
    assert count_by_name(eg_a, name) == 0


TRANSFORM_CASES = {
    "variable-not-json": TransForm(type="VARIABLE", value="not json", template="x"),
    "variable-array": TransForm(type="VARIABLE", value="[1,2]", template="x"),
    "variable-nested": TransForm(type="VARIABLE", value='{"a": {"b": 1}}', template="${a}"),
    "variable-hc-name": TransForm(type="VARIABLE", value='{"HC.a": "$.id"}', template="${HC.a}"),
    "variable-name-65": TransForm(type="VARIABLE", value=json.dumps({"v" * 65: "$.id"}),
                                  template="${%s}" % ("v" * 65)),
    "variable-undefined-ref": TransForm(type="VARIABLE", value='{"a": "$.id"}', template="${b}"),
    "variable-no-template": TransForm(type="VARIABLE", value='{"a": "$.id"}'),
    "variable-101-vars": TransForm(type="VARIABLE",
                                   value=json.dumps({f"v{i}": "c" for i in range(101)}),
                                   template="${v1}"),
    "variable-bad-jsonpath": TransForm(type="VARIABLE", value='{"a": "$..[["}', template="${a}"),
    "constant-no-value": TransForm(type="CONSTANT"),
    "constant-1025": TransForm(type="CONSTANT", value="c" * 1025),
    "bad-type": TransForm(type="FOO", value=""),
}


@pytest.mark.parametrize("case", list(TRANSFORM_CASES))
def test_invalid_transform_513000(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target(transform=TRANSFORM_CASES[case])])
    assert_eg_error(e, 400, "EG.00513000")
    assert count_by_name(eg_a, name) == 0


def test_transform_missing_is_400(eg_a, res_a):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    t = webhook_target()
    t.transform = None
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[t])
    assert_eg_error(e, 400, "EG.00513000")
    assert count_by_name(eg_a, name) == 0


def test_fg_target_variable_must_render_json(eg_a, res_a, pa):
    """docs/transforms.md: FunctionGraph payload must be JSON."""
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[fg_target(fn_urn(pa), transform=TransForm(
                    type="VARIABLE", value='{"a": "$.id"}', template="plain ${a} text"))])
    assert_eg_error(e, 400, "EG.00513000")
    assert count_by_name(eg_a, name) == 0


OTHER_CASES = {
    "zero-targets": lambda ch, src: dict(sources=[custom_source(src)], targets=[]),
    "two-sources": lambda ch, src: dict(sources=[custom_source(src), custom_source(src)],
                                        targets=[webhook_target()]),
    "no-sources": lambda ch, src: dict(sources=[], targets=[webhook_target()]),
    "retry-101": lambda ch, src: dict(sources=[custom_source(src)],
                                      targets=[webhook_target(retry_times=101)]),
    "retry-negative": lambda ch, src: dict(sources=[custom_source(src)],
                                           targets=[webhook_target(retry_times=-1)]),
    "unknown-custom-source": lambda ch, src: dict(sources=[custom_source("no-such-src")],
                                                  targets=[webhook_target()]),
    "partner-provider": lambda ch, src: dict(sources=[SubscriptionSource(
        name=src, provider_type="PARTNER", filter=src_filter(src))], targets=[webhook_target()]),
    "source-detail-over-1024": lambda ch, src: dict(sources=[SubscriptionSource(
        name=src, provider_type="CUSTOM", filter=src_filter(src), detail={"x": "y" * 1100})],
        targets=[webhook_target()]),
    "bad-source-id": lambda ch, src: dict(sources=[custom_source(src, id="UPPER" + "a" * 30)],
                                          targets=[webhook_target()]),
    "short-target-id": lambda ch, src: dict(sources=[custom_source(src)],
                                            targets=[webhook_target(id="a" * 31)]),
    "desc-256": lambda ch, src: dict(sources=[custom_source(src)], targets=[webhook_target()],
                                     description="d" * 256),
    "dlq-not-kafka": lambda ch, src: dict(sources=[custom_source(src)], targets=[webhook_target(
        dead_letter_queue=DeadLetterQueue(type="SQS", instance_id="i", connection_id=BOGUS,
                                          topic="dlq"))]),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_invalid_subscription_513000(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, **OTHER_CASES[case](ch.id, src.name))
    assert_eg_error(e, 400, "EG.00513000")
    assert count_by_name(eg_a, name) == 0


def test_missing_channel_id_513000_unknown_channel_513005(eg_a, res_a):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, sources=[custom_source(src.name)],
                targets=[webhook_target()])
    assert_eg_error(e, 400, "EG.00513000")
    e = sdk_err(create, eg_a, name=name, channel_id=BOGUS, sources=[custom_source(src.name)],
                targets=[webhook_target()])
    assert_eg_error(e, 400, "EG.00513005")
    assert count_by_name(eg_a, name) == 0


def test_six_targets_quota(eg_a, res_a):
    ch, src = res_a.app_setup()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target(f"http://h{i}.example/") for i in range(6)])
    assert_eg_error(e, 403, "EG.00514003")
    assert count_by_name(eg_a, name) == 0
    s = res_a.subscription(ch.id, [custom_source(src.name)],
                           [webhook_target(f"http://h{i}.example/") for i in range(5)])
    assert len(s.targets) == 5


def test_duplicate_subscription_name(eg_a, res_a):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    e = sdk_err(create, eg_a, name=s.name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target()])
    assert_eg_error(e, 400, "EG.00513001")
    assert count_by_name(eg_a, s.name) == 1


def test_invalid_before_duplicate(eg_a, res_a):
    """docs/errors.md: field validation (400 513004) precedes uniqueness (513001)."""
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    e = sdk_err(create, eg_a, name=s.name, channel_id=ch.id,
                sources=[custom_source(src.name, {"type": []})], targets=[webhook_target()])
    assert_eg_error(e, 400, "EG.00513004")


def test_dlq_same_topic_as_kafka_target(eg_a, res_a):
    ch, src = res_a.app_setup()
    kc = res_a.kafka_connection()
    name = uniq("sub")
    t = kafka_target(kc.id, topic="orders", dead_letter_queue=DeadLetterQueue(
        type="KAFKA", instance_id="kafka-inst-e2e", connection_id=kc.id, topic="orders"))
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[t])
    assert_eg_error(e, 400, "EG.00513003")
    assert count_by_name(eg_a, name) == 0
    t.dead_letter_queue.topic = "orders-dlq"
    s = res_a.subscription(ch.id, [custom_source(src.name)], [t])
    assert body_of(s)["targets"][0]["dead_letter_queue"]["topic"] == "orders-dlq"


# ----------------------------------------------------------------------------- update semantics

def test_update_replaces_target_set(eg_a, res_a, pa):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)],
                           [webhook_target("http://one.example/"), fg_target(fn_urn(pa))])
    t1, t2 = s.targets
    new_t1 = webhook_target("http://one-changed.example/", id=t1.id)
    t3 = workflow_target("wf-9")
    u = eg_a.update_subscription(UpdateSubscriptionRequest(subscription_id=s.id,
                                                           body=SubscriptionUpdateReq(
                                                               targets=[new_t1, t3])))
    ids = {t.id: t for t in u.targets}
    assert set(ids) - {t1.id} and t1.id in ids and t2.id not in ids and len(ids) == 2
    assert ids[t1.id].detail["url"] == "http://one-changed.example/"
    assert ids[t1.id].created_time == t1.created_time
    assert u.sources[0].id == s.sources[0].id          # sources untouched
    assert u.name == s.name and u.channel_id == ch.id
    g = show(eg_a, s.id)
    assert {t.id for t in g.targets} == set(ids)
    assert_eg_error(sdk_err(eg_a.show_detail_of_subscription_target,
                            ShowDetailOfSubscriptionTargetRequest(subscription_id=s.id,
                                                                  target_id=t2.id)),
                    404, "EG.00514001")


def test_update_description_only_keeps_sets(eg_a, res_a):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    u = eg_a.update_subscription(UpdateSubscriptionRequest(
        subscription_id=s.id, body=SubscriptionUpdateReq(description="only desc")))
    assert u.description == "only desc"
    assert body_of(u)["sources"] == body_of(s)["sources"]
    assert [t.id for t in u.targets] == [t.id for t in s.targets]


def test_update_sources_filter_and_errors_change_nothing(eg_a, res_a):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    before = body_of(show(eg_a, s.id))
    sid = s.sources[0].id
    f2 = src_filter(src.name, subject=[{"op": "StringStartsWith", "values": ["a/"]}])
    bad = [
        (SubscriptionUpdateReq(sources=[custom_source(src.name, {"type": []}, id=sid)]),
         400, "EG.00513004"),
        (SubscriptionUpdateReq(sources=[SubscriptionSource(id=sid, name="HC.OBS",
                                                           provider_type="OFFICIAL",
                                                           filter=src_filter("HC.OBS"))]),
         400, "EG.00513000"),
        (SubscriptionUpdateReq(targets=[webhook_target(f"http://h{i}.example/")
                                        for i in range(6)]), 403, "EG.00514003"),
        (SubscriptionUpdateReq(targets=[]), 400, "EG.00513000"),
        (SubscriptionUpdateReq(targets=[webhook_target("ftp://x")]), 400, "EG.00513003"),
    ]
    for body, st, code in bad:
        e = sdk_err(eg_a.update_subscription, UpdateSubscriptionRequest(subscription_id=s.id,
                                                                        body=body))
        assert_eg_error(e, st, code)
        assert body_of(show(eg_a, s.id)) == before
    u = eg_a.update_subscription(UpdateSubscriptionRequest(subscription_id=s.id, body=
                                 SubscriptionUpdateReq(sources=[custom_source(src.name, f2,
                                                                              id=sid)])))
    assert u.sources[0].id == sid and body_of(u)["sources"][0]["filter"] == f2
    assert u.sources[0].created_time == s.sources[0].created_time


def test_update_subscription_source(eg_a, res_a):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    sid = s.sources[0].id
    f2 = src_filter(src.name, type=[{"op": "StringIn", "values": ["x"]}])
    r = eg_a.update_subscription_source(UpdateSubscriptionSourceRequest(
        subscription_id=s.id, source_id=sid, body=custom_source(src.name, f2)))
    assert r.id == sid and r.filter == f2
    assert body_of(show(eg_a, s.id))["sources"][0]["filter"] == f2
    e = sdk_err(eg_a.update_subscription_source, UpdateSubscriptionSourceRequest(
        subscription_id=s.id, source_id="a" * 32, body=custom_source(src.name)))
    assert_eg_error(e, 404, "EG.00514001")
    e = sdk_err(eg_a.update_subscription_source, UpdateSubscriptionSourceRequest(
        subscription_id=s.id, source_id=sid, body=SubscriptionSource(
            name="HC.OBS", provider_type="OFFICIAL", filter=src_filter("HC.OBS"))))
    assert_eg_error(e, 400, "EG.00513000")
    e = sdk_err(eg_a.update_subscription_source, UpdateSubscriptionSourceRequest(
        subscription_id=s.id, source_id=sid, body=custom_source(src.name, {"type": []})))
    assert_eg_error(e, 400, "EG.00513004")
    e = sdk_err(eg_a.update_subscription_source, UpdateSubscriptionSourceRequest(
        subscription_id=BOGUS, source_id=sid, body=custom_source(src.name)))
    assert_eg_error(e, 404, "EG.00514001")
    assert body_of(show(eg_a, s.id))["sources"][0]["filter"] == f2


def test_subscription_target_operations(eg_a, res_a, pa):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    t0 = s.targets[0]
    c = eg_a.create_subscription_target(CreateSubscriptionTargetRequest(
        subscription_id=s.id, body=fg_target(fn_urn(pa))))
    assert c.name == "HC.FunctionGraph" and c.id and c.retry_times == 16
    assert len(show(eg_a, s.id).targets) == 2
    g = eg_a.show_detail_of_subscription_target(ShowDetailOfSubscriptionTargetRequest(
        subscription_id=s.id, target_id=c.id))
    assert g.id == c.id and g.detail["urn"] == fn_urn(pa)
    # update: body id ignored, configuration replaced
    u = eg_a.update_subscription_target(UpdateSubscriptionTargetRequest(
        subscription_id=s.id, target_id=c.id,
        body=fg_target(fn_urn(pa, "f2"), id="z" * 40, retry_times=3)))
    assert u.id == c.id and u.detail["urn"] == fn_urn(pa, "f2") and u.retry_times == 3
    assert u.created_time == c.created_time
    e = sdk_err(eg_a.update_subscription_target, UpdateSubscriptionTargetRequest(
        subscription_id=s.id, target_id=c.id, body=webhook_target("ftp://bad")))
    assert_eg_error(e, 400, "EG.00513003")
    # delete one -> 204; last one refused
    d = eg_a.delete_subscription_target(DeleteSubscriptionTargetRequest(subscription_id=s.id,
                                                                        target_id=c.id))
    assert d.status_code == 204
    assert_eg_error(sdk_err(eg_a.show_detail_of_subscription_target,
                            ShowDetailOfSubscriptionTargetRequest(subscription_id=s.id,
                                                                  target_id=c.id)),
                    404, "EG.00514001")
    e = sdk_err(eg_a.delete_subscription_target, DeleteSubscriptionTargetRequest(
        subscription_id=s.id, target_id=t0.id))
    assert_eg_error(e, 400, "EG.00513000")
    assert [t.id for t in show(eg_a, s.id).targets] == [t0.id]
    # quota: up to 5 targets, the 6th is 403
    for i in range(4):
        eg_a.create_subscription_target(CreateSubscriptionTargetRequest(
            subscription_id=s.id, body=webhook_target(f"http://t{i}.example/")))
    e = sdk_err(eg_a.create_subscription_target, CreateSubscriptionTargetRequest(
        subscription_id=s.id, body=webhook_target("http://t6.example/")))
    assert_eg_error(e, 403, "EG.00514003")
    assert len(show(eg_a, s.id).targets) == 5
    e = sdk_err(eg_a.create_subscription_target, CreateSubscriptionTargetRequest(
        subscription_id=BOGUS, body=webhook_target()))
    assert_eg_error(e, 404, "EG.00514001")


def test_execute_subscription_operation(eg_a, res_a):
    ch, src = res_a.app_setup()
    s1 = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    s2 = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])

    def op(ids, operation):
        return eg_a.execute_subscription_operation(ExecuteSubscriptionOperationRequest(
            body=SubscriptionOperateReq(subscription_ids=ids, operation=operation)))

    r = op([s1.id, BOGUS, s2.id], "DISABLE")
    assert r.failed_count == 1
    ev = {e.subscription_id: e for e in r.events}
    assert set(ev) == {s1.id, s2.id, BOGUS}
    assert ev[BOGUS].error_code == "EG.00514001" and ev[BOGUS].error_msg
    assert not ev[s1.id].error_code and not ev[s2.id].error_code
    assert show(eg_a, s1.id).status == "DISABLED" and show(eg_a, s2.id).status == "DISABLED"
    r = op([s1.id], "ENABLE")
    assert r.failed_count == 0
    assert show(eg_a, s1.id).status == "ENABLED" and show(eg_a, s2.id).status == "DISABLED"
    r = op([s1.id], "ENABLE")                               # idempotent
    assert r.failed_count == 0 and show(eg_a, s1.id).status == "ENABLED"
    for ids, operation in [([], "ENABLE"), ([f"00000000-0000-4000-8000-0000000000{i:02d}" for i in range(11)], "ENABLE"), ([s1.id], "START"),
                           ([s1.id], None)]:
        e = sdk_err(op, ids, operation)
        assert_eg_error(e, 400, "EG.00513000")
    assert show(eg_a, s1.id).status == "ENABLED"


def test_delete_subscription_and_bindings(eg_a, res_a):
    ch, src = res_a.app_setup()
    conn = res_a.connection()
    kc = res_a.kafka_connection()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [
        webhook_target("http://10.0.0.1/", connection_id=conn.id),
        webhook_target(dead_letter_queue=DeadLetterQueue(type="KAFKA", instance_id="i",
                                                         connection_id=kc.id, topic="dlq"))])
    # list filters
    assert [x.id for x in eg_a.list_subscriptions(ListSubscriptionsRequest(
        channel_id=ch.id)).items] == [s.id]
    assert [x.id for x in eg_a.list_subscriptions(ListSubscriptionsRequest(
        connection_id=conn.id)).items] == [s.id]
    assert [x.id for x in eg_a.list_subscriptions(ListSubscriptionsRequest(
        connection_id=kc.id)).items] == [s.id]
    # bound resources cannot be deleted
    for fn, req in [(eg_a.delete_event_source, DeleteEventSourceRequest(source_id=src.id)),
                    (eg_a.delete_connection, DeleteConnectionRequest(connection_id=conn.id)),
                    (eg_a.delete_connection, DeleteConnectionRequest(connection_id=kc.id)),
                    (eg_a.delete_channel, DeleteChannelRequest(channel_id=ch.id))]:
        assert_eg_error(sdk_err(fn, req), 409, "EG.00514002")
    assert eg_a.list_event_sources(ListEventSourcesRequest(name=src.name)).total == 1
    # delete the subscription, then the bindings are gone
    assert eg_a.delete_subscription(DeleteSubscriptionRequest(subscription_id=s.id)).status_code \
        == 204
    res_a.subs.remove(s.id)
    assert_eg_error(sdk_err(show, eg_a, s.id), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.delete_subscription, DeleteSubscriptionRequest(
        subscription_id=s.id)), 404, "EG.00514001")
    assert eg_a.delete_connection(DeleteConnectionRequest(connection_id=conn.id)).status_code == 204
    res_a.conns.remove(conn.id)
    assert eg_a.delete_event_source(DeleteEventSourceRequest(source_id=src.id)).status_code == 204
    res_a.sources.remove(src.id)


def test_channel_with_only_subscription_cannot_be_deleted(eg_a, res_a):
    """A subscription may use a source attached to another channel [dec]; its channel is then
    bound by the subscription alone."""
    ch1, src = res_a.app_setup()
    ch2 = res_a.channel()
    res_a.subscription(ch2.id, [custom_source(src.name)], [webhook_target()])
    assert_eg_error(sdk_err(eg_a.delete_channel, DeleteChannelRequest(channel_id=ch2.id)),
                    409, "EG.00514002")


def test_quota_used_counts(eg_a, res_a):
    def used(t):
        return eg_a.list_quotas(ListQuotasRequest(type=t)).quotas.resources[0].used
    ch, src = res_a.app_setup()
    before = used("SUBSCRIPTION")
    res_a.subscription(ch.id, [custom_source(src.name)],
                       [webhook_target(f"http://h{i}.example/") for i in range(5)])
    assert used("SUBSCRIPTION") == before + 1
    assert used("SUBSCRIPTION_TARGET") == 5        # largest count over subscriptions


def test_channel_subscription_quota(eg_b, res_b):
    """CHANNEL_SUBSCRIPTION default 100 per channel (docs/limits.md)."""
    q = eg_b.list_quotas(ListQuotasRequest(type="CHANNEL_SUBSCRIPTION")).quotas.resources[0]
    assert q.quota == 100
    ch, src = res_b.app_setup()
    for _ in range(q.quota):
        res_b.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    name = uniq("sub")
    e = sdk_err(create, eg_b, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target()])
    assert_eg_error(e, 403, "EG.00514003")
    # another channel is not affected
    ch2 = res_b.channel()
    res_b.subscription(ch2.id, [custom_source(src.name)], [webhook_target()], name=name)


# ----------------------------------------------------------------------------- valid boundaries
# Validation must not be stricter than the spec: these are accepted and stored verbatim.

ALL_OPS_FILTER = lambda s: {  # noqa: E731
    "source": [{"op": "StringIn", "values": [s]}],
    "type": {"and": [{"op": "StringNotIn", "values": ["x"]},
                     {"op": "StringStartsWith", "values": ["order."]},
                     {"op": "StringNotStartsWith", "values": ["y"]},
                     {"op": "StringEndsWith", "values": ["created", "updated"]},
                     {"op": "StringNotEndsWith", "values": ["z"]}]},
    "subject": [{"op": "IsNotNull"}, {"op": "IsNull"}],
    "data": {
        "n": [{"op": "NumberIn", "values": [1, 2.5]}, {"op": "NumberNotIn", "values": [3]},
              {"op": "NumberLessThan", "value": 10}, {"op": "NumberNotLessThan", "value": -1},
              {"op": "NumberGreaterThan", "values": [0]}],
        "m": {"k": [{"op": "NumberNotGreaterThan", "value": 1e6},
                    {"op": "NumberInRange", "values": [[1, 5], [7, 7]]},
                    {"op": "NumberNotInRange", "values": [[100, 200]]}]},
        "flag": [{"op": "IsTrue"}, {"op": "IsNotTrue", "values": ["ignored"]}],
        "a": {"b": {"c": {"d": {"e": [{"op": "IsNotNull"}]}}}},
        "x.y": [{"op": "StringIn", "values": [""]}],
    },
}


@pytest.mark.parametrize("case", ["all-operators", "empty-data", "five-conditions"])
def test_valid_filters_accepted_verbatim(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    f = {"all-operators": ALL_OPS_FILTER(src.name),
         "empty-data": src_filter(src.name, data={}),
         "five-conditions": src_filter(src.name, type=[
             {"op": "StringIn", "values": [str(i)]} for i in range(5)])}[case]
    s = res_a.subscription(ch.id, [custom_source(src.name, f)], [webhook_target()])
    assert body_of(show(eg_a, s.id))["sources"][0]["filter"] == f


TRANSFORM_OK = {
    "constant-empty": TransForm(type="CONSTANT", value=""),
    "constant-1024": TransForm(type="CONSTANT", value="c" * 1024),
    "variable-100-vars": TransForm(type="VARIABLE",
                                   value=json.dumps({f"v{i}": "c" for i in range(100)},
                                                    separators=(",", ":")),
                                   template="${v0}${v99}"),
    "variable-name-64": TransForm(type="VARIABLE", value=json.dumps({"v" * 64: "$.data"}),
                                  template="${%s}" % ("v" * 64)),
    "variable-scalars": TransForm(type="VARIABLE",
                                  value='{"s": "$.source", "n": 1, "b": true, "z": null}',
                                  template='{"s": "${s}", "n": ${n}}'),
}


@pytest.mark.parametrize("case", list(TRANSFORM_OK))
def test_valid_transforms_accepted(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    tr = TRANSFORM_OK[case]
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target(transform=tr)])
    t = body_of(show(eg_a, s.id))["targets"][0]["transform"]
    assert t["type"] == tr.type and t.get("value") == tr.value
    if tr.template is not None:
        assert t["template"] == tr.template


def test_retry_bounds_and_description_255(eg_a, res_a):
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)],
                           [webhook_target(retry_times=0), webhook_target(retry_times=100)],
                           description="d" * 255)
    assert sorted(t.retry_times for t in s.targets) == [0, 100]
    assert s.description == "d" * 255


def test_smn_variable_subject_needs_template(eg_a, res_a, pa):
    from huaweicloudsdkeg.v1 import SmnTargetDetailSubjectTransform
    ch, src = res_a.app_setup()
    t = smn_target(pa)
    t.smn_detail.subject_transform = SmnTargetDetailSubjectTransform(type="VARIABLE",
                                                                     value='{"a": "$.id"}')
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[t])
    assert_eg_error(e, 400, "EG.00513000")
    assert count_by_name(eg_a, name) == 0


def test_kafka_key_transform_none_accepted(eg_a, res_a):
    from huaweicloudsdkeg.v1 import KafkaTargetDetailKeyTransform
    ch, src = res_a.app_setup()
    t = kafka_target(res_a.kafka_connection().id)
    t.kafka_detail.key_transform = KafkaTargetDetailKeyTransform(type="NONE")
    s = res_a.subscription(ch.id, [custom_source(src.name)], [t])
    assert body_of(s)["targets"][0]["kafka_detail"]["keyTransform"]["type"] == "NONE"


def test_execute_operation_ten_ids_ok(eg_a):
    ids = [f"00000000-0000-4000-8000-0000000001{i:02d}" for i in range(10)]
    r = eg_a.execute_subscription_operation(ExecuteSubscriptionOperationRequest(
        body=SubscriptionOperateReq(subscription_ids=ids, operation="ENABLE")))
    assert r.failed_count == 10
    assert all(e.error_code == "EG.00514001" for e in r.events)


def test_update_creates_entries_with_client_ids_and_bumps_updated_time(eg_a, res_a):
    import time
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target()])
    time.sleep(1.1)
    new_tid, new_sid = "c" * 40, "d" * 40
    u = eg_a.update_subscription(UpdateSubscriptionRequest(subscription_id=s.id, body=
        SubscriptionUpdateReq(targets=[webhook_target("http://b.example/", id=new_tid)],
                              sources=[custom_source(src.name, id=new_sid)])))
    assert [t.id for t in u.targets] == [new_tid]
    assert [x.id for x in u.sources] == [new_sid]
    assert u.updated_time > s.updated_time and u.created_time == s.created_time


@pytest.mark.parametrize("case", ["kafka-with-webhook-conn", "kafka-unknown-conn",
                                  "kafka-no-conn", "webhook-with-kafka-conn",
                                  "webhook-unknown-conn", "dlq-unknown-conn",
                                  "dlq-webhook-conn"])
def test_target_connection_must_fit(eg_a, res_a, case):
    ch, src = res_a.app_setup()
    wc = res_a.connection().id
    kc = res_a.kafka_connection().id
    t = {"kafka-with-webhook-conn": lambda: kafka_target(wc),
         "kafka-unknown-conn": lambda: kafka_target(BOGUS),
         "kafka-no-conn": lambda: kafka_target(None),
         "webhook-with-kafka-conn": lambda: webhook_target(connection_id=kc),
         "webhook-unknown-conn": lambda: webhook_target(connection_id=BOGUS),
         "dlq-unknown-conn": lambda: webhook_target(dead_letter_queue=DeadLetterQueue(
             type="KAFKA", instance_id="i", connection_id=BOGUS, topic="d")),
         "dlq-webhook-conn": lambda: webhook_target(dead_letter_queue=DeadLetterQueue(
             type="KAFKA", instance_id="i", connection_id=wc, topic="d"))}[case]()
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[t])
    assert_eg_error(e, 400, {"EG.00513003", "EG.00513000"})
    assert count_by_name(eg_a, name) == 0


def test_client_target_id_unique_across_service(eg_a, res_a):
    ch, src = res_a.app_setup()
    tid = "e" * 40
    res_a.subscription(ch.id, [custom_source(src.name)], [webhook_target(id=tid)])
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target(id=tid)])
    assert_eg_error(e, 400, {"EG.00513000", "EG.00513001"})
    assert count_by_name(eg_a, name) == 0


def test_validation_order(eg_a, res_a):
    """docs/errors.md: first violation in table order (name, description, channel_id, sources,
    targets); field validation before quota."""
    ch, src = res_a.app_setup()
    bad_filter = [custom_source(src.name, {"type": []})]
    bad_target = [webhook_target("ftp://x")]
    name = uniq("sub")
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=bad_filter, targets=bad_target)
    assert_eg_error(e, 400, "EG.00513004")                 # sources before targets
    e = sdk_err(create, eg_a, name="bad name", channel_id=ch.id, sources=bad_filter,
                targets=bad_target)
    assert_eg_error(e, 400, "EG.00513000")                 # name first
    e = sdk_err(create, eg_a, name=name, channel_id=ch.id, sources=[custom_source(src.name)],
                targets=[webhook_target(f"http://h{i}.example/") for i in range(5)] + bad_target)
    assert_eg_error(e, 400, "EG.00513003")                 # invalid beats over-quota
    assert count_by_name(eg_a, name) == 0
