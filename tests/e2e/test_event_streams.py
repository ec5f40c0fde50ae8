"""Event streams (ops 56–61; docs/limits.md): the control plane. The streams here point at
brokers that do not answer, so a started one is ERROR, never RUNNING; test_stream_runtime.py
moves data through real brokers."""
import copy

import pytest
from huaweicloudsdkeg.v1 import (
    BatchWindow, CreateEventStreamingRequest, DeleteEventStreamingRequest,
    EventStreamingCreateReq, EventStreamingCreateReqRuleConfig, EventStreamingOperateReq,
    EventStreamingSink, EventStreamingSource, EventStreamingUpdateReq, ListEventStreamingRequest,
    ResumeEventStreamingRequest, RunOption, ShowEventStreamingRequest, SinkFGParameters,
    SinkKafkaParameters, SinkObsParameters, SourceCommunityMQParameters, SourceDMSMQParameters,
    SourceKafkaMQParameters, SourceMobileMQParameters, TransForm, UpdateEventStreamingRequest,
)

from eglib import MASK, TIME_RE, UUID_RE, assert_eg_error, body_of, sdk_err, uniq
from sdkx import fn_urn

PATH = "/v1/{p}/eventstreamings"


@pytest.fixture
def streams(eg_a):
    ids = []
    yield ids
    for i in ids:
        try:
            eg_a.delete_event_streaming(DeleteEventStreamingRequest(eventstreaming_id=i))
        except Exception:  # noqa: BLE001 - best effort
            pass


def kafka_source(**kw):
    kw.setdefault("addr", "127.0.0.1:9092")
    kw.setdefault("group", "g1")
    kw.setdefault("topic", "orders")
    return EventStreamingSource(source_kafka=SourceKafkaMQParameters(**kw))


def fg_sink(project):
    return EventStreamingSink(sink_fg=SinkFGParameters(invoke_type="ASYNC", urn=fn_urn(project),
                                                       agency="EG_AGENCY"))


def create(eg, streams, name=None, source=None, sink=None, **kw):
    r = eg.create_event_streaming(CreateEventStreamingRequest(body=EventStreamingCreateReq(
        name=name or uniq("es"), source=source, sink=sink, **kw)))
    streams.append(r.event_streaming_id)
    return r


def show(eg, sid):
    return eg.show_event_streaming(ShowEventStreamingRequest(eventstreaming_id=sid))


def resume(eg, sid, op):
    return eg.resume_event_streaming(ResumeEventStreamingRequest(
        eventstreaming_id=sid, body=EventStreamingOperateReq(operation=op)))


def total(raw):
    r = raw.call("GET", PATH, query={"limit": "1"})
    assert r.status == 200, r
    return r.json()["total"]


def test_stream_lifecycle(eg_a, eg_b, pa, streams):
    name = uniq("es")
    src = kafka_source(password="kafka-secret-e2e", user_name="u", seek_to="earliest",
                       ssl_certificate_pwd="cert-pass-e2e", enable_sasl_ssl=True,
                       sasl_mechanism="PLAIN")
    rc = EventStreamingCreateReqRuleConfig(
        transform=TransForm(type="ORIGINAL"),
        filter={"data": {"kind": [{"op": "StringIn", "values": ["a"]}]}})
    opt = RunOption(thread_num=3, batch_window=BatchWindow(count=500, time=10, interval=0))
    c = create(eg_a, streams, name=name, description="pipe", source=src, sink=fg_sink(pa),
               rule_config=rc, option=opt)
    assert set(body_of(c)) == {"eventStreamingID"}
    sid = c.event_streaming_id
    assert UUID_RE.match(sid)

    g = show(eg_a, sid)
    b = body_of(g)
    assert (g.id, g.name, g.description, g.status) == (sid, name, "pipe", "CREATED")
    assert TIME_RE.match(g.created_time) and TIME_RE.match(g.updated_time)
    k = b["source"]["source_kafka"]
    assert k["password"] == MASK and k["ssl_certificate_pwd"] == MASK
    assert k["topic"] == "orders" and k["user_name"] == "u" and k["seek_to"] == "earliest"
    assert b["source"]["name"] == "HC.Kafka" and b["sink"]["name"] == "HC.FunctionGraph"
    assert b["sink"]["sink_fg"]["invoke_type"] == "ASYNC"
    assert b["option"] == {"thread_num": 3, "batch_window": {"count": 500, "time": 10,
                                                             "interval": 0}}
    assert b["rule_config"]["transform"]["type"] == "ORIGINAL"
    assert b"kafka-secret-e2e" not in g.raw_content and b"cert-pass-e2e" not in g.raw_content

    # other projects do not see it
    assert_eg_error(sdk_err(show, eg_b, sid), 404, "EG.00514001")

    # update: full replacement; ****** keeps the stored secret
    u = eg_a.update_event_streaming(UpdateEventStreamingRequest(
        eventstreaming_id=sid, body=EventStreamingUpdateReq(
            name=name, description="new", source=kafka_source(password=MASK, topic="t2"),
            sink=fg_sink(pa))))
    assert body_of(u) == {"eventStreamingID": sid}
    g2 = show(eg_a, sid)
    b2 = body_of(g2)
    assert g2.description == "new" and g2.status == "CREATED"
    assert g2.created_time == g.created_time
    assert b2["source"]["source_kafka"]["password"] == MASK
    assert "ssl_certificate_pwd" not in b2["source"]["source_kafka"]    # replaced wholesale
    assert b2["source"]["source_kafka"]["topic"] == "t2"
    assert b2["rule_config"] == {} and b2["option"] == {"thread_num": 1}

    # START / PAUSE, idempotent
    # started, but its Kafka (127.0.0.1:9092) does not answer: ERROR, never RUNNING
    r = resume(eg_a, sid, "START")
    assert body_of(r) == {"eventStreamingID": sid}
    assert show(eg_a, sid).status == "ERROR"
    resume(eg_a, sid, "START")
    assert show(eg_a, sid).status == "ERROR"
    resume(eg_a, sid, "PAUSE")
    resume(eg_a, sid, "PAUSE")
    assert show(eg_a, sid).status == "STOPPED"
    resume(eg_a, sid, "START")

    lst = eg_a.list_event_streaming(ListEventStreamingRequest(limit=100))
    item = [i for i in lst.items if i.id == sid]
    assert item and item[0].status == "ERROR" and item[0].name == name
    assert body_of(lst)["items"][[i.id for i in lst.items].index(sid)]["source"][
        "source_kafka"]["password"] == MASK

    # delete a running stream
    d = eg_a.delete_event_streaming(DeleteEventStreamingRequest(eventstreaming_id=sid))
    assert d.status_code == 204
    streams.remove(sid)
    assert_eg_error(sdk_err(show, eg_a, sid), 404, "EG.00514001")
    assert_eg_error(sdk_err(resume, eg_a, sid, "START"), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.delete_event_streaming,
                            DeleteEventStreamingRequest(eventstreaming_id=sid)), 404, "EG.00514001")
    assert sid not in [i.id for i in eg_a.list_event_streaming(
        ListEventStreamingRequest(limit=100)).items]


def test_every_source_and_sink_kind(eg_a, pa, res_a, streams):
    conn = res_a.kafka_connection()
    sources = [
        kafka_source(),
        EventStreamingSource(source_mobile_rocketmq=SourceMobileMQParameters(
            group_id="g", instance_id="i", topic="t", message_model="CLUSTERING",
            addr_type="PUBLIC", addr="127.0.0.1:9876", sdk_url="http://sdk", consume_timeout=30000,
            message_type="NORMAL", max_reconsumer_times=3, secret_key="mobile-sk-e2e")),
        EventStreamingSource(source_community_rocketmq=SourceCommunityMQParameters(
            addr="127.0.0.1:9876", group="g", topic="t", vpc_id="v", subnet_id="s",
            max_reconsume_times=-1, access_key="ak", secret_key="community-sk-e2e")),
        EventStreamingSource(source_dms_rocketmq=SourceDMSMQParameters(
            instance_id="i", group="g", topic="t", secret_key="dms-sk-e2e"),
            name="HC.DMS_ROCKETMQ"),
    ]
    sinks = [
        fg_sink(pa),
        EventStreamingSink(sink_kafka=SinkKafkaParameters(
            topic="out", connection_id=conn.id, key_transform=[TransForm(type="ORIGINAL")])),
        EventStreamingSink(sink_obs=SinkObsParameters(
            access_key="obs-ak-e2e", secret_key="obs-sk-e2e", obs_bucket="bkt",
            obs_path="p/", time_format="yyyy/MM/dd")),
    ]
    for i, src in enumerate(sources):
        sink = sinks[i % len(sinks)]
        c = create(eg_a, streams, source=src, sink=sink)
        g = show(eg_a, c.event_streaming_id)
        b = body_of(g)
        member = next(k for k in b["source"] if k != "name")
        assert g.source.to_dict()[member], member
        for secret in (b"mobile-sk-e2e", b"community-sk-e2e", b"dms-sk-e2e", b"obs-ak-e2e",
                       b"obs-sk-e2e"):
            assert secret not in g.raw_content
        if member != "source_kafka":
            assert b["source"][member]["secret_key"] == MASK
        if "sink_obs" in b["sink"]:
            assert b["sink"]["sink_obs"]["access_key"] == MASK
            assert b["sink"]["sink_obs"]["secret_key"] == MASK
            assert b["sink"]["sink_obs"]["obs_bucket"] == "bkt"
        if "sink_kafka" in b["sink"]:
            assert b["sink"]["sink_kafka"]["connectionId"] == conn.id
            assert b["sink"]["sink_kafka"]["keyTransform"] == [{"type": "ORIGINAL"}]
    mobile = body_of(show(eg_a, streams[1]))["source"]["source_mobile_rocketmq"]
    assert mobile["max_reconsumer_times"] == 3 and mobile["consume_timeout"] == 30000


def test_reference_example_shapes(raw_a, pa, streams):
    """The reference's example sends thread_num as a string and null/"" for unused secrets."""
    body = {"name": uniq("es"), "description": "x",
            "source": {"source_kafka": {"addr": "10.10.10.10:8100", "group": "group-test",
                                        "topic": "topic-test", "seek_to": "earliest",
                                        "ssl_certificate_pwd": None, "user_name": "",
                                        "password": ""}},
            "sink": {"sink_fg": {"invoke_type": "SYNC", "urn": fn_urn(pa)}},
            "rule_config": {"filter": {}},
            "option": {"thread_num": "3", "batch_window": {"count": 500, "time": 10,
                                                           "interval": 0}}}
    r = raw_a.call("POST", PATH, body=body)
    assert r.status == 200, r
    sid = r.json()["eventStreamingID"]
    streams.append(sid)
    g = raw_a.call("GET", f"{PATH}/{sid}").json()
    assert g["option"]["thread_num"] == 3
    assert "password" not in g["source"]["source_kafka"]


VALID = {
    "source": {"source_kafka": {"group": "g", "topic": "t"}},
    "sink": {"sink_obs": {"access_key": "a", "secret_key": "s", "obs_bucket": "b",
                          "time_format": "yyyy"}},
}

INVALID = [
    # (what, source, sink)
    ("kafka without topic", {"source_kafka": {"group": "g"}}, None),
    ("kafka bad seek_to", {"source_kafka": {"group": "g", "topic": "t", "seek_to": "now"}}, None),
    ("kafka detail not an object", {"source_kafka": "x"}, None),
    ("mobile without sdk_url", {"source_mobile_rocketmq": {
        "group_id": "g", "instance_id": "i", "topic": "t", "message_model": "CLUSTERING",
        "addr_type": "PUBLIC", "addr": "a", "consume_timeout": 30000, "message_type": "NORMAL"}},
     None),
    ("mobile consume_timeout out of range", {"source_mobile_rocketmq": {
        "group_id": "g", "instance_id": "i", "topic": "t", "message_model": "CLUSTERING",
        "addr_type": "PUBLIC", "addr": "a", "sdk_url": "u", "consume_timeout": 10,
        "message_type": "NORMAL"}}, None),
    ("community without vpc_id", {"source_community_rocketmq": {
        "addr": "a", "group": "g", "topic": "t", "subnet_id": "s"}}, None),
    ("community ssl_enable not bool", {"source_community_rocketmq": {
        "addr": "a", "group": "g", "topic": "t", "vpc_id": "v", "subnet_id": "s",
        "ssl_enable": "yes"}}, None),
    ("dms without instance_id", {"source_dms_rocketmq": {"group": "g", "topic": "t"}}, None),
    ("two sources", {"source_kafka": {"group": "g", "topic": "t"},
                     "source_dms_rocketmq": {"instance_id": "i", "group": "g", "topic": "t"}},
     None),
    ("no source member", {}, None),
    ("source name mismatch", {"source_kafka": {"group": "g", "topic": "t"}, "name": "HC.OBS"},
     None),
    ("fg bad invoke_type", None, {"sink_fg": {"invoke_type": "LATER"}}),
    ("kafka sink without connectionId", None, {"sink_kafka": {"topic": "t"}}),
    ("kafka sink unknown connection", None, {"sink_kafka": {"topic": "t",
                                                           "connectionId": "nope"}}),
    ("kafka sink keyTransform not an array", None, {"sink_kafka": {
        "topic": "t", "connectionId": "c", "keyTransform": {"type": "ORIGINAL"}}}),
    ("obs without time_format", None, {"sink_obs": {"access_key": "a", "secret_key": "s",
                                                    "obs_bucket": "b"}}),
    ("obs without access_key", None, {"sink_obs": {"secret_key": "s", "obs_bucket": "b",
                                                   "time_format": "t"}}),
    ("two sinks", None, {"sink_fg": {}, "sink_obs": VALID["sink"]["sink_obs"]}),
]


def _body(name, source, sink, **extra):
    b = {"name": name, "source": copy.deepcopy(VALID["source"] if source is None else source),
         "sink": copy.deepcopy(VALID["sink"] if sink is None else sink)}
    b.update(extra)
    return b


def test_invalid_detail_objects_change_nothing(raw_a, streams):
    name = uniq("es")
    r = raw_a.call("POST", PATH, body=_body(name, None, None))
    assert r.status == 200, r
    sid = r.json()["eventStreamingID"]
    streams.append(sid)
    before = raw_a.call("GET", f"{PATH}/{sid}").json()
    n = total(raw_a)
    for what, source, sink in INVALID:
        r = raw_a.call("POST", PATH, body=_body(uniq("es"), source, sink))
        assert_eg_error(r, 400, "EG.00513000")
        assert r.json()["error_msg"], what
        r = raw_a.call("PUT", f"{PATH}/{sid}", body=_body(name, source, sink))
        assert_eg_error(r, 400, "EG.00513000")
    others = [
        _body("-bad-name", None, None),
        _body(uniq("es"), None, None, option={"thread_num": 65}),
        _body(uniq("es"), None, None, option={"batch_window": {"count": 0}}),
        _body(uniq("es"), None, None, option={"batch_window": {"interval": 16}}),
        _body(uniq("es"), None, None, rule_config={"transform": {"type": "NOPE"}}),
        {"source": VALID["source"], "sink": VALID["sink"]},
    ]
    for b in others:
        assert_eg_error(raw_a.call("POST", PATH, body=b), 400, "EG.00513000")
    # a filter error
    r = raw_a.call("POST", PATH, body=_body(uniq("es"), None, None, rule_config={
        "filter": {"data": {"x": [{"op": "NoSuchOp", "values": [1]}]}}}))
    assert r.status == 400, r
    # ****** for a secret is only allowed on update
    bad = _body(uniq("es"), None, None)
    bad["sink"]["sink_obs"]["secret_key"] = MASK
    assert_eg_error(raw_a.call("POST", PATH, body=bad), 400, "EG.00513000")
    # resume with an unknown operation
    for op in ({"operation": "STOP"}, {"operation": None}, {}):
        assert_eg_error(raw_a.call("POST", f"/v1/{{p}}/eventstreamings/operate/{sid}", body=op),
                        400, "EG.00513000")
    assert total(raw_a) == n
    after = raw_a.call("GET", f"{PATH}/{sid}").json()
    assert after == before


def test_kafka_sink_needs_kafka_connection(raw_a, res_a, streams):
    hook = res_a.connection()
    r = raw_a.call("POST", PATH, body=_body(uniq("es"), None, {"sink_kafka": {
        "topic": "t", "connectionId": hook.id}}))
    assert_eg_error(r, 400, "EG.00513000")
    assert "KAFKA" in r.json()["error_msg"]


def test_duplicate_name_and_rename(raw_a, streams):
    n1, n2 = uniq("es"), uniq("es")
    for n in (n1, n2):
        r = raw_a.call("POST", PATH, body=_body(n, None, None))
        assert r.status == 200, r
        streams.append(r.json()["eventStreamingID"])
    assert_eg_error(raw_a.call("POST", PATH, body=_body(n1, None, None)), 400, "EG.00513001")
    # update onto another stream's name
    assert_eg_error(raw_a.call("PUT", f"{PATH}/{streams[1]}", body=_body(n1, None, None)),
                    400, "EG.00513001")
    # update without name
    b = _body(n2, None, None)
    del b["name"]
    assert_eg_error(raw_a.call("PUT", f"{PATH}/{streams[1]}", body=b), 400, "EG.00513000")
    # rename is a full replacement too
    n3 = uniq("es")
    r = raw_a.call("PUT", f"{PATH}/{streams[1]}", body=_body(n3, None, None))
    assert r.status == 200, r
    assert raw_a.call("GET", f"{PATH}/{streams[1]}").json()["name"] == n3


def test_paging(eg_a, raw_a, streams):
    for _ in range(3):
        r = raw_a.call("POST", PATH, body=_body(uniq("es"), None, None))
        assert r.status == 200, r
        streams.append(r.json()["eventStreamingID"])
    full = eg_a.list_event_streaming(ListEventStreamingRequest(limit=100))
    assert full.total == len(full.items) >= 3 and full.size == len(full.items)
    ids = [i.id for i in full.items]
    # newest first
    assert ids.index(streams[2]) < ids.index(streams[1]) < ids.index(streams[0])
    p1 = eg_a.list_event_streaming(ListEventStreamingRequest(offset=0, limit=2))
    p2 = eg_a.list_event_streaming(ListEventStreamingRequest(offset=2, limit=2))
    assert p1.total == full.total and p1.size == 2
    assert [i.id for i in p1.items] + [i.id for i in p2.items] == ids[:4]
    assert_eg_error(raw_a.call("GET", PATH, query={"limit": "0"}), 400, "EG.00513000")
    assert_eg_error(raw_a.call("GET", PATH, query={"offset": "-1"}), 400, "EG.00513000")


def test_fixed_ceiling_of_100_streams(raw_a, streams):
    for _ in range(100 - total(raw_a)):
        r = raw_a.call("POST", PATH, body=_body(uniq("es"), None, None))
        assert r.status == 200, r
        streams.append(r.json()["eventStreamingID"])
    assert total(raw_a) == 100
    assert_eg_error(raw_a.call("POST", PATH, body=_body(uniq("es"), None, None)),
                    403, "EG.00514003")
    assert total(raw_a) == 100
