"""Target catalogue (op 28), agencies (44–45), quotas (46), API versions (47), triggers (48–49),
X-Request-Id on every response."""
import urllib.parse

import pytest
from huaweicloudsdkeg.v1 import (
    AgencyCreateReq, CreateAgenciesRequest, ListAgenciesRequest, ListApiVersionsRequest,
    ListEventTargetRequest, ListQuotasRequest, ListTriggersRequest, ListWorkflowTriggersRequest,
)

from eglib import TIME_RE, assert_eg_error, assert_request_id, body_of, sdk_err
from sdkx import custom_source, fg_target, fn_urn, webhook_target, workflow_target

KINDS = {"WEBHOOK", "HC.APIGW", "HC.FunctionGraph", "HC.FunctionFlow", "HC.SMN", "HC.EG",
         "HC.Kafka", "HC.RocketMQ"}


def test_target_catalogue(eg_a):
    r = eg_a.list_event_target(ListEventTargetRequest(limit=1000, support_types=["SUBSCRIPTION"]))
    b = body_of(r)
    assert b["total"] == len(b["items"]) == b["size"]
    names = {i["name"] for i in b["items"]}
    assert KINDS <= names, KINDS - names
    for i in b["items"]:
        assert i["id"] and i["label"] and i["provider_type"] in ("OFFICIAL", "CUSTOM")
        assert isinstance(i["parameters"], list)
        for p in i["parameters"]:
            assert p["name"] and isinstance(p.get("metadata"), dict)
        assert TIME_RE.match(i["created_time"])
    web = [i for i in b["items"] if i["name"] == "WEBHOOK"][0]
    assert web["provider_type"] == "CUSTOM"
    # FLOW entries are event-stream sinks, a different subset
    flow = body_of(eg_a.list_event_target(ListEventTargetRequest(limit=1000,
                                                                 support_types=["FLOW"])))
    assert flow["total"] >= 1
    assert "WEBHOOK" not in {i["name"] for i in flow["items"]}
    # both types: repeated query keys; union
    both = eg_a.list_event_target(ListEventTargetRequest(limit=1000,
                                                         support_types=["SUBSCRIPTION", "FLOW"]))
    assert both.total >= b["total"]


def test_target_catalogue_comma_separated_and_paging(raw_a):
    r1 = raw_a.call("GET", "/v1/{p}/target-catalogs",
                    query=[("support_types", "SUBSCRIPTION,FLOW"), ("limit", "1000")])
    r2 = raw_a.call("GET", "/v1/{p}/target-catalogs",
                    query=[("support_types", "SUBSCRIPTION"), ("support_types", "FLOW"),
                           ("limit", "1000")])
    assert r1.status == r2.status == 200
    assert r1.json()["total"] == r2.json()["total"]
    r3 = raw_a.call("GET", "/v1/{p}/target-catalogs", query={"limit": 2, "offset": 1})
    assert r3.status == 200 and r3.json()["size"] == 2
    r4 = raw_a.call("GET", "/v1/{p}/target-catalogs", query={"fuzzy_label": "zzzz-nothing-zzzz"})
    assert r4.json()["total"] == 0


def test_agencies(eg_b):
    for t, fixed in [("TARGET_CONNECTION", "EG_TRUST"),
                     ("CUSTOM_SOURCE_RABBITMQ", "EG_SOURCE_RABBITMQ_AGENCY")]:
        before = eg_b.list_agencies(ListAgenciesRequest(type=t)).agencies
        assert before in ([], [fixed]) or before is None
        c = eg_b.create_agencies(CreateAgenciesRequest(body=AgencyCreateReq(type=t)))
        assert c.agencies == [fixed]
        c = eg_b.create_agencies(CreateAgenciesRequest(body=AgencyCreateReq(type=t)))
        assert c.agencies == [fixed]                     # idempotent
        assert eg_b.list_agencies(ListAgenciesRequest(type=t)).agencies == [fixed]


def test_agencies_bad_type(eg_a):
    assert_eg_error(sdk_err(eg_a.list_agencies, ListAgenciesRequest(type="NOPE")), 400,
                    "EG.00513000")
    assert_eg_error(sdk_err(eg_a.list_agencies, ListAgenciesRequest()), 400, "EG.00513000")
    assert_eg_error(sdk_err(eg_a.create_agencies, CreateAgenciesRequest(
        body=AgencyCreateReq(type="NOPE"))), 400, "EG.00513000")


QUOTAS = {"CHANNEL": (50, 0, 10000), "CHANNEL_SUBSCRIPTION": (100, 0, 10000),
          "SOURCE": (100, 0, 10000), "SOURCE_RABBITMQ": (10, 0, 1000),
          "SOURCE_ROCKETMQ": (10, 0, 1000), "SUBSCRIPTION": (500, 0, 10000),
          "SUBSCRIPTION_TARGET": (5, 1, 5), "CONNECTION": (50, 0, 10000),
          "PRIVATE_ENDPOINT": (10, 0, 1000)}


def test_quotas_defaults(eg_a):
    r = eg_a.list_quotas(ListQuotasRequest())
    items = {q.type: q for q in r.quotas.resources}
    assert set(items) == set(QUOTAS)
    for t, (quota, mn, mx) in QUOTAS.items():
        q = items[t]
        assert (q.quota, q.min, q.max) == (quota, mn, mx), t
        assert isinstance(q.used, int) and 0 <= q.used <= q.quota
        assert q.name


@pytest.mark.parametrize("t", sorted(QUOTAS))
def test_quota_single_type(eg_a, t):
    r = eg_a.list_quotas(ListQuotasRequest(type=t))
    assert [q.type for q in r.quotas.resources] == [t]


def test_quota_unknown_type(eg_a):
    assert_eg_error(sdk_err(eg_a.list_quotas, ListQuotasRequest(type="WIDGETS")), 400,
                    "EG.00513000")


def test_quota_used_reflects_channels(eg_a, res_a):
    def used():
        return eg_a.list_quotas(ListQuotasRequest(type="CHANNEL")).quotas.resources[0].used
    u0 = used()
    res_a.channel()
    assert used() == u0 + 1


def test_api_versions_unauthenticated(raw_a, server):
    r = raw_a.anon("GET", "/")
    assert r.status == 200, r
    assert_request_id(r.header("X-Request-Id"))
    v = r.json()["versions"]
    assert len(v) >= 1
    v1 = [x for x in v if x["id"] == "v1"][0]
    assert v1["status"] == "CURRENT"
    assert v1["updated"] == "2022-04-19T12:20:10Z"
    assert v1["version"] == "" and v1["min_version"] == ""
    assert v1["links"][0]["rel"] == "self" and v1["links"][0]["href"].endswith("/v1")


def test_api_versions_sdk_signed(eg_a):
    r = eg_a.list_api_versions(ListApiVersionsRequest())
    assert r.status_code == 200
    assert [x.id for x in r.versions] == ["v1"] or "v1" in [x.id for x in r.versions]


def test_triggers(eg_a, res_a, pa, raw_a):
    ch, src = res_a.app_setup()
    urn = fn_urn(pa, "trig")
    s1 = res_a.subscription(ch.id, [custom_source(src.name)],
                            [fg_target(urn), webhook_target()])
    s2 = res_a.subscription(ch.id, [custom_source(src.name)],
                            [workflow_target("wf-trig-1")])
    res_a.subscription(ch.id, [custom_source(src.name)], [fg_target(fn_urn(pa, "other"))])
    r = eg_a.list_triggers(ListTriggersRequest(func_urn=urn))
    assert r.total == 1 and [i.id for i in r.items] == [s1.id]
    assert r.items[0].name == s1.name
    # the SDK percent-encodes ':' -> %3A; check the raw form decodes to the same urn
    enc = urllib.parse.quote(urn, safe="")
    rr = raw_a.call("GET", "/v1/{p}/subscription-triggers/" + enc)
    assert rr.status == 200 and [i["id"] for i in rr.json()["items"]] == [s1.id]
    assert eg_a.list_triggers(ListTriggersRequest(func_urn=urn + "x")).total == 0
    w = eg_a.list_workflow_triggers(ListWorkflowTriggersRequest(workflow_id="wf-trig-1"))
    assert w.total == 1 and [i.id for i in w.items] == [s2.id]
    assert eg_a.list_workflow_triggers(ListWorkflowTriggersRequest(
        workflow_id="wf-none")).total == 0
    # literal 'workflow' route wins over {func_urn}
    rr = raw_a.call("GET", "/v1/{p}/subscription-triggers/workflow/wf-trig-1")
    assert [i["id"] for i in rr.json()["items"]] == [s2.id]


def test_request_id_everywhere(raw_a):
    seen = set()
    for r in [raw_a.anon("GET", "/"),
              raw_a.call("GET", "/v1/{p}/channels"),
              raw_a.call("GET", "/v1/{p}/channels", sign=False),
              raw_a.call("GET", "/v1/{p}/channels/00000000-0000-4000-8000-000000000000"),
              raw_a.call("GET", "/v1/{p}/nothing-here"),
              raw_a.call("GET", "/v1/{p}/quotas", query={"type": "x"})]:
        rid = r.header("X-Request-Id")
        assert_request_id(rid)
        seen.add(rid)
    assert len(seen) == 6                      # unique per request


def test_client_request_id_not_echoed(raw_a):
    r = raw_a.call("GET", "/v1/{p}/channels", headers={"X-Request-Id": "client-supplied"})
    assert r.status == 200 and r.header("X-Request-Id") != "client-supplied"
    assert_request_id(r.header("X-Request-Id"))


def test_json_content_type_exact(raw_a):
    """docs/errors.md: Content-Type application/json;charset=UTF-8 on JSON bodies."""
    for r in [raw_a.anon("GET", "/"), raw_a.call("GET", "/v1/{p}/channels"),
              raw_a.call("GET", "/v1/{p}/channels", sign=False),
              raw_a.call("GET", "/v1/{p}/nothing-here")]:
        ct = (r.header("Content-Type") or "").replace(" ", "").lower()
        assert ct == "application/json;charset=utf-8", (r.status, ct)


def test_server_announced_listening(server):
    """Run contract: the server prints a line containing `listening on` when ready."""
    assert any("listening on" in ln for ln in server.log_path.read_text().splitlines())


def test_workflow_trigger_with_slash_in_id(eg_a, res_a):
    """The SDK percent-encodes '/' in path parameters (%2F); routing must treat it as one
    segment and signing must decode it (docs/signing.md)."""
    ch, src = res_a.app_setup()
    s = res_a.subscription(ch.id, [custom_source(src.name)], [workflow_target("wf/with/slash")])
    w = eg_a.list_workflow_triggers(ListWorkflowTriggersRequest(workflow_id="wf/with/slash"))
    assert [i.id for i in w.items] == [s.id]
    urn = "urn:fss:cn-north-4:x:function:default:a/b:latest"
    s2 = res_a.subscription(ch.id, [custom_source(src.name)], [fg_target(urn)])
    assert [i.id for i in eg_a.list_triggers(ListTriggersRequest(func_urn=urn)).items] == [s2.id]
