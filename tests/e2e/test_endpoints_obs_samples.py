"""Access endpoints (ops 50–53), OBS buckets (ops 54–55) and event
samples (op 62)."""
import json
import uuid

import pytest
from huaweicloudsdkeg.v1 import (
    CreateEndpointRequest, DeleteEndpointRequest, EndpointCreateReq, EndpointUpdateReq,
    ListEndpointsRequest, ListObsBucketsRequest, ListQuotasRequest, ShowListOfEventSampleRequest,
    UpdateEndpointRequest,
)

from eglib import TIME_RE, UUID_RE, assert_eg_error, assert_request_id, body_of, sdk_err, uniq

INFO_KEYS = {"id", "name", "vpc_id", "subnet_id", "domain", "description", "status",
             "error_info", "type", "scalable", "created_time", "updated_time", "endpoints"}


class Endpoints:
    """Creates endpoints and deletes what is left at the end of the test."""

    def __init__(self, eg):
        self.eg = eg
        self.ids = []

    def create(self, name=None, vpc_id=None, subnet_id=None, description=None):
        r = self.eg.create_endpoint(CreateEndpointRequest(body=EndpointCreateReq(
            name=name or uniq("ep"), vpc_id=vpc_id or str(uuid.uuid4()),
            subnet_id=subnet_id or str(uuid.uuid4()), description=description)))
        self.ids.append(r.id)
        return r

    def cleanup(self):
        from huaweicloudsdkcore.exceptions import exceptions as exc
        for i in self.ids:
            try:
                self.eg.delete_endpoint(DeleteEndpointRequest(endpoint_id=i))
            except exc.ClientRequestException:
                pass


@pytest.fixture
def eps(eg_a):
    e = Endpoints(eg_a)
    yield e
    e.cleanup()


def private_names(eg, **kw):
    r = eg.list_endpoints(ListEndpointsRequest(type="PRIVATE", limit=1000, **kw))
    return [x.name for x in r.items]


def public_endpoint(eg):
    r = eg.list_endpoints(ListEndpointsRequest(type="PUBLIC"))
    assert r.total == 1 and r.size == 1, r
    return r.items[0]


# ----------------------------------------------------------------------------- endpoints

def test_endpoint_crud(eg_a, eps, server):
    vpc, subnet = str(uuid.uuid4()), str(uuid.uuid4())
    name = uniq("Ep")
    c = eps.create(name=name, vpc_id=vpc, subnet_id=subnet, description="first")
    assert c.status_code == 200
    assert_request_id(c.x_request_id)
    body = body_of(c)
    assert set(body) == INFO_KEYS, body
    assert UUID_RE.match(c.id)
    assert (c.name, c.vpc_id, c.subnet_id, c.description) == (name, vpc, subnet, "first")
    assert (c.status, c.type, c.scalable) == ("CREATED", "PRIVATE", False)
    assert body["error_info"] == {} and body["endpoints"] == []
    assert c.domain == f"{server.host}:{server.port}"
    assert TIME_RE.match(c.created_time) and TIME_RE.match(c.updated_time)

    u = eg_a.update_endpoint(UpdateEndpointRequest(endpoint_id=c.id, body=EndpointUpdateReq(
        description="second")))
    assert (u.id, u.name, u.vpc_id, u.description) == (c.id, name, vpc, "second")
    assert u.created_time == c.created_time and u.updated_time >= c.updated_time

    # absent description keeps it
    u2 = eg_a.update_endpoint(UpdateEndpointRequest(endpoint_id=c.id, body=EndpointUpdateReq()))
    assert u2.description == "second"

    lst = eg_a.list_endpoints(ListEndpointsRequest(name=name))
    assert lst.total == 1 and lst.size == 1
    assert lst.items[0].id == c.id and lst.items[0].description == "second"

    d = eg_a.delete_endpoint(DeleteEndpointRequest(endpoint_id=c.id))
    assert d.status_code == 204
    assert eg_a.list_endpoints(ListEndpointsRequest(name=name)).total == 0
    e = sdk_err(eg_a.delete_endpoint, DeleteEndpointRequest(endpoint_id=c.id))
    assert_eg_error(e, 404, "EG.00514001")
    e = sdk_err(eg_a.update_endpoint, UpdateEndpointRequest(
        endpoint_id=c.id, body=EndpointUpdateReq(description="x")))
    assert_eg_error(e, 404, "EG.00514001")


def test_public_endpoint_listed_first_and_stable(eg_a, eg_b, eps):
    p = public_endpoint(eg_a)
    assert p.type == "PUBLIC" and p.status == "CREATED" and p.scalable is False
    assert UUID_RE.match(p.id) and p.domain
    assert public_endpoint(eg_a).id == p.id
    assert public_endpoint(eg_a).created_time == p.created_time
    assert public_endpoint(eg_b).id != p.id
    eps.create()
    r = eg_a.list_endpoints(ListEndpointsRequest(limit=1000))
    assert r.items[0].id == p.id
    assert all(x.type == "PRIVATE" for x in r.items[1:])
    assert r.total == r.size == len(r.items) >= 2
    for sort in ("name:ASC", "name:DESC", "created_time:ASC"):
        assert eg_a.list_endpoints(ListEndpointsRequest(sort=sort)).items[0].id == p.id


def test_public_endpoint_cannot_be_updated_or_deleted(eg_a):
    p = public_endpoint(eg_a)
    e = sdk_err(eg_a.update_endpoint, UpdateEndpointRequest(
        endpoint_id=p.id, body=EndpointUpdateReq(description="hacked")))
    assert_eg_error(e, 403, "EG.00514004")
    e = sdk_err(eg_a.delete_endpoint, DeleteEndpointRequest(endpoint_id=p.id))
    assert_eg_error(e, 403, "EG.00514004")
    p2 = public_endpoint(eg_a)
    assert p2.id == p.id and p2.description == p.description


def test_endpoint_filters_and_paging(eg_a, eps):
    tag = uuid.uuid4().hex[:10]
    vpcs = [str(uuid.uuid4()) for _ in range(3)]
    subnet = str(uuid.uuid4())
    made = [eps.create(name=f"flt-{tag}-{i}", vpc_id=vpcs[i], subnet_id=subnet)
            for i in range(3)]
    assert private_names(eg_a, fuzzy_name=f"FLT-{tag.upper()}") == [
        f"flt-{tag}-2", f"flt-{tag}-1", f"flt-{tag}-0"]   # created_time:DESC default
    r = eg_a.list_endpoints(ListEndpointsRequest(fuzzy_name=tag, sort="name:ASC"))
    assert [x.name for x in r.items] == [m.name for m in made] and r.total == 3
    r = eg_a.list_endpoints(ListEndpointsRequest(vpc_id=vpcs[1]))
    assert r.total == 1 and [x.id for x in r.items] == [made[1].id]
    r = eg_a.list_endpoints(ListEndpointsRequest(subnet_id=subnet, sort="name:DESC"))
    assert r.total == 3 and [x.id for x in r.items] == [m.id for m in reversed(made)]
    r = eg_a.list_endpoints(ListEndpointsRequest(subnet_id=subnet, type="PUBLIC"))
    assert r.total == 0 and r.items == []
    r = eg_a.list_endpoints(ListEndpointsRequest(name=f"flt-{tag}-0", type="PRIVATE"))
    assert r.total == 1 and r.items[0].id == made[0].id
    r = eg_a.list_endpoints(ListEndpointsRequest(name=f"flt-{tag}", type="PRIVATE"))
    assert r.total == 0

    # paging over the whole listing (public first) is consistent with total
    full = eg_a.list_endpoints(ListEndpointsRequest(limit=1000, sort="name:ASC"))
    ids = [x.id for x in full.items]
    assert full.total == len(ids) >= 4 and full.items[0].type == "PUBLIC"
    paged = []
    for off in range(0, full.total, 2):
        p = eg_a.list_endpoints(ListEndpointsRequest(offset=off, limit=2, sort="name:ASC"))
        assert p.total == full.total and p.size == len(p.items) <= 2
        paged += [x.id for x in p.items]
    assert paged == ids
    one = eg_a.list_endpoints(ListEndpointsRequest(limit=1))
    assert one.size == 1 and one.items[0].type == "PUBLIC" and one.total == full.total
    past = eg_a.list_endpoints(ListEndpointsRequest(offset=full.total))
    assert past.size == 0 and past.items == [] and past.total == full.total


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1001"}, {"offset": "-1"},
                                   {"sort": "id:ASC"}, {"type": "OTHER"}])
def test_endpoint_list_bad_query(raw_a, query):
    assert_eg_error(raw_a.call("GET", "/v1/{p}/endpoints", query=query), 400, "EG.00513000")


def test_endpoint_vpc_conflict(eg_a, eps):
    vpc = str(uuid.uuid4())
    eps.create(vpc_id=vpc)
    name = uniq("ep-dup-vpc")
    e = sdk_err(eg_a.create_endpoint, CreateEndpointRequest(body=EndpointCreateReq(
        name=name, vpc_id=vpc, subnet_id=str(uuid.uuid4()))))
    assert_eg_error(e, 400, "EG.00513006")
    assert eg_a.list_endpoints(ListEndpointsRequest(vpc_id=vpc)).total == 1
    assert eg_a.list_endpoints(ListEndpointsRequest(name=name)).total == 0


def test_endpoint_vpc_free_after_delete(eg_a, eps):
    vpc = str(uuid.uuid4())
    c = eps.create(vpc_id=vpc)
    eg_a.delete_endpoint(DeleteEndpointRequest(endpoint_id=c.id))
    c2 = eps.create(vpc_id=vpc)
    assert c2.vpc_id == vpc


def test_endpoint_same_vpc_other_project(eps, eg_b):
    vpc = str(uuid.uuid4())
    eps.create(vpc_id=vpc)
    other = Endpoints(eg_b)
    try:
        assert other.create(vpc_id=vpc).vpc_id == vpc
        assert eg_b.list_endpoints(ListEndpointsRequest(type="PRIVATE")).total == 1
    finally:
        other.cleanup()


def test_endpoint_duplicate_name(eg_a, eps):
    c = eps.create()
    e = sdk_err(eg_a.create_endpoint, CreateEndpointRequest(body=EndpointCreateReq(
        name=c.name, vpc_id=str(uuid.uuid4()), subnet_id=str(uuid.uuid4()))))
    assert_eg_error(e, 400, "EG.00513001")
    assert eg_a.list_endpoints(ListEndpointsRequest(name=c.name)).total == 1


@pytest.mark.parametrize("body", [
    {"vpc_id": "v1", "subnet_id": "s"},
    {"name": "", "vpc_id": "v1", "subnet_id": "s"},
    {"name": "-bad", "vpc_id": "v1", "subnet_id": "s"},
    {"name": "has space", "vpc_id": "v1", "subnet_id": "s"},
    {"name": "x" * 129, "vpc_id": "v1", "subnet_id": "s"},
    {"name": "BODY-ok", "subnet_id": "s"},
    {"name": "BODY-ok", "vpc_id": "v1"},
    {"name": "BODY-ok", "vpc_id": 7, "subnet_id": "s"},
    {"name": "BODY-ok", "vpc_id": "v1", "subnet_id": "s", "description": "d" * 256},
    {"name": "BODY-ok", "vpc_id": "v1", "subnet_id": "s", "description": 1},
    "not json",
    [],
])
def test_endpoint_create_invalid(eg_a, raw_a, body):
    before = eg_a.list_endpoints(ListEndpointsRequest()).total
    raw = body if isinstance(body, (dict, list)) else body.encode()
    assert_eg_error(raw_a.call("POST", "/v1/{p}/endpoints", body=raw), 400, "EG.00513000")
    assert eg_a.list_endpoints(ListEndpointsRequest()).total == before


def test_endpoint_update_invalid_changes_nothing(eg_a, raw_a, eps):
    c = eps.create(description="keep")
    for body in ({"description": 5}, {"description": "d" * 256}, "{", []):
        raw = body if isinstance(body, (dict, list)) else body.encode()
        r = raw_a.call("PUT", f"/v1/{{p}}/endpoints/{c.id}", body=raw)
        assert_eg_error(r, 400, "EG.00513000")
    r = eg_a.list_endpoints(ListEndpointsRequest(name=c.name))
    assert r.items[0].description == "keep" and r.items[0].updated_time == c.updated_time


def test_endpoint_quota(eg_a, eps):
    q = eg_a.list_quotas(ListQuotasRequest(type="PRIVATE_ENDPOINT")).quotas.resources
    assert len(q) == 1 and q[0].quota == 10
    for _ in range(q[0].quota - q[0].used):
        eps.create()
    assert eg_a.list_quotas(ListQuotasRequest(
        type="PRIVATE_ENDPOINT")).quotas.resources[0].used == q[0].quota
    name = uniq("ep-over")
    e = sdk_err(eg_a.create_endpoint, CreateEndpointRequest(body=EndpointCreateReq(
        name=name, vpc_id=str(uuid.uuid4()), subnet_id=str(uuid.uuid4()))))
    assert_eg_error(e, 403, "EG.00514003")
    assert eg_a.list_endpoints(ListEndpointsRequest(name=name)).total == 0
    eg_a.delete_endpoint(DeleteEndpointRequest(endpoint_id=eps.ids.pop()))
    eps.create(name=name)


def test_endpoint_isolated_between_projects(eg_a, eg_b, eps):
    c = eps.create()
    assert eg_b.list_endpoints(ListEndpointsRequest(name=c.name)).total == 0
    e = sdk_err(eg_b.delete_endpoint, DeleteEndpointRequest(endpoint_id=c.id))
    assert_eg_error(e, 404, "EG.00514001")
    assert eg_a.list_endpoints(ListEndpointsRequest(name=c.name)).total == 1


# ----------------------------------------------------------------------------- OBS buckets

def test_list_obs_buckets_empty(eg_a):
    r = eg_a.list_obs_buckets(ListObsBucketsRequest())
    assert r.status_code == 200
    assert body_of(r) == {"total": 0, "size": 0, "items": []}
    r = eg_a.list_obs_buckets(ListObsBucketsRequest(offset=5, limit=10, sort="name:ASC"))
    assert (r.total, r.size, r.items) == (0, 0, [])


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "abc"}, {"offset": "-3"},
                                   {"sort": "bucketName:ASC"}])
def test_list_obs_buckets_bad_query(raw_a, query):
    r = raw_a.call("GET", "/v1/{p}/subscriptions/obsbuckets", query=query)
    assert_eg_error(r, 400, "EG.00513000")


def test_obsbuckets_route_wins_over_subscription_id(raw_a):
    r = raw_a.call("GET", "/v1/{p}/subscriptions/obsbuckets")
    assert r.status == 200 and r.json() == {"total": 0, "size": 0, "items": []}
    r = raw_a.call("GET", "/v1/{p}/subscriptions/obsbuckets/")
    assert r.status == 200 and r.json()["items"] == []
    # the captured route still serves other ids
    r = raw_a.call("GET", "/v1/{p}/subscriptions/00000000-0000-4000-8000-000000000000")
    assert_eg_error(r, 404, "EG.00514001")


REFURBISH = "/v1/{p}/subscriptions/obsbuckets/my-bucket/refurbishobs"


def test_refurbishobs_unknown_trigger_404(raw_a):
    body = {"agency_name": "EG_AGENCY", "id": "obs-trigger-1", "transform": {"type": "ORIGINAL"}}
    assert_eg_error(raw_a.call("POST", REFURBISH, body=body), 404, "EG.00514001")


@pytest.mark.parametrize("body", [
    {"agency_name": "EG_AGENCY", "id": "t1"},
    {"agency_name": "EG_AGENCY", "id": "t1", "transform": {"type": "BOGUS"}},
    {"agency_name": "EG_AGENCY", "id": "t1", "transform": "ORIGINAL"},
    {"id": "t1", "transform": {"type": "ORIGINAL"}},
    {"agency_name": "EG_AGENCY", "transform": {"type": "ORIGINAL"}},
    b"{",
    b"",
])
def test_refurbishobs_invalid_body_400(raw_a, body):
    assert_eg_error(raw_a.call("POST", REFURBISH, body=body), 400, "EG.00513000")


# ----------------------------------------------------------------------------- samples

def test_event_samples(eg_a):
    r = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(limit=1000))
    assert r.status_code == 200
    assert r.total == r.size == len(r.items) >= 2
    keys = {"id", "name", "content", "event_type_id", "event_type_name", "event_source_id",
            "event_source_name", "created_time", "updated_time"}
    for it in body_of(r)["items"]:
        assert keys <= set(it), it
        assert UUID_RE.match(it["id"]) and UUID_RE.match(it["event_source_id"])
        assert TIME_RE.match(it["created_time"])
        ev = json.loads(it["content"])
        assert ev["type"] == it["event_type_name"] and ev["source"] == it["event_source_name"]
    # stable ids
    again = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(limit=1000))
    assert [x.id for x in again.items] == [x.id for x in r.items]


def test_event_samples_filters_and_paging(eg_a):
    allr = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(limit=1000,
                                                                      sort="name:ASC"))
    names = [x.name for x in allr.items]
    assert names == sorted(names)
    obs = [x for x in allr.items if x.event_source_name == "HC.OBS"]
    assert obs
    r = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(
        event_source_id=obs[0].event_source_id, limit=1000))
    assert {x.id for x in r.items} == {x.id for x in obs} and r.total == len(obs)
    r = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(
        event_type_name=obs[0].event_type_name))
    assert [x.id for x in r.items] == [obs[0].id] and r.total == 1
    r = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(name="obs-"))
    assert r.total == len(obs)
    r = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(name="no-such-sample"))
    assert (r.total, r.items) == (0, [])
    paged = []
    for off in range(allr.total):
        p = eg_a.show_list_of_event_sample(ShowListOfEventSampleRequest(
            offset=off, limit=1, sort="name:ASC"))
        assert p.total == allr.total and p.size == 1
        paged.append(p.items[0].name)
    assert paged == names


@pytest.mark.parametrize("query", [{"limit": "0"}, {"offset": "x"}, {"sort": "name"}])
def test_event_samples_bad_query(raw_a, query):
    assert_eg_error(raw_a.call("GET", "/v1/{p}/samples", query=query), 400, "EG.00513000")
