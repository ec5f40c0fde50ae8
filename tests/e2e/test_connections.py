"""Connections (ops 39–43)."""
import time

import pytest
from huaweicloudsdkeg.v1 import (
    ConnectionCreateReq, ConnectionUpdateReq, CreateConnectionRequest, DeleteConnectionRequest,
    KafkaConnectionDetail, ListConnectionsRequest, ShowDetailOfConnectionRequest,
    UpdateConnectionRequest,
)

from eglib import MASK, TIME_RE, UUID_RE, assert_eg_error, body_of, sdk_err, uniq


def create_conn(eg, **kw):
    kw.setdefault("vpc_id", "vpc-e2e")
    kw.setdefault("subnet_id", "subnet-e2e")
    return eg.create_connection(CreateConnectionRequest(body=ConnectionCreateReq(**kw)))


def show(eg, cid):
    return eg.show_detail_of_connection(ShowDetailOfConnectionRequest(connection_id=cid))


def test_webhook_connection_crud(eg_a, res_a):
    name = uniq("conn")
    c = res_a.connection(name=name, description="hooks")
    b = body_of(c)
    assert UUID_RE.match(c.id)
    assert c.name == name and c.description == "hooks"
    assert b["type"] == "WEBHOOK"           # default type, a string
    assert c.status == "CREATED"            # WEBHOOK connections are CREATED at once
    assert b["error_info"] == {}
    assert c.vpc_id == "vpc-e2e" and c.subnet_id == "subnet-e2e"
    assert c.agency == "EG_TRUST"
    assert isinstance(b["flavor"], dict) and b["flavor"]["name"] == "default"
    assert b["flavor"]["concurrency_type"] in ("shared", "exclusive")
    assert TIME_RE.match(c.created_time) and TIME_RE.match(c.updated_time)

    g = show(eg_a, c.id)
    assert (g.id, g.name, g.status) == (c.id, name, "CREATED")

    u = eg_a.update_connection(UpdateConnectionRequest(connection_id=c.id,
                                                       body=ConnectionUpdateReq(description="new")))
    assert u.description == "new" and u.name == name and u.created_time == c.created_time
    assert show(eg_a, c.id).description == "new"

    lst = eg_a.list_connections(ListConnectionsRequest(name=name))
    assert lst.total == 1 and [i.id for i in lst.items] == [c.id]

    assert eg_a.delete_connection(DeleteConnectionRequest(connection_id=c.id)).status_code == 204
    res_a.conns.remove(c.id)
    assert_eg_error(sdk_err(show, eg_a, c.id), 404, "EG.00514001")
    assert eg_a.list_connections(ListConnectionsRequest(name=name)).total == 0


def test_kafka_connection_masks_password_and_settles(eg_a, res_a):
    c = res_a.kafka_connection()
    b = body_of(c)
    assert b["type"] == "KAFKA"
    assert b["kafka_detail"]["password"] == MASK
    assert b["kafka_detail"]["instance_id"] == "kafka-inst-e2e"
    assert b["kafka_detail"]["addr"] == "127.0.0.1:9"
    assert b["kafka_detail"]["enable_sasl_ssl"] is True
    assert b["kafka_detail"]["acks"] == "1"
    assert c.status in ("CREATING", "CREATED", "CREATE_FAILED")
    assert b"kafka-pass-e2e" not in c.raw_content
    # reachability is checked asynchronously; nothing listens on port 9 -> CREATE_FAILED
    deadline = time.monotonic() + 15
    g = show(eg_a, c.id)
    while g.status == "CREATING" and time.monotonic() < deadline:
        time.sleep(0.3)
        g = show(eg_a, c.id)
    assert g.status == "CREATE_FAILED", g.status
    assert g.error_info.error_code in ("EG.00511000", "EG.00513000")
    assert g.error_info.error_msg
    assert b"kafka-pass-e2e" not in g.raw_content
    # filter by instance id
    lst = eg_a.list_connections(ListConnectionsRequest(instance_id="kafka-inst-e2e"))
    assert c.id in [i.id for i in lst.items]
    lst = eg_a.list_connections(ListConnectionsRequest(instance_id="no-such-instance"))
    assert lst.total == 0


def test_kafka_default_acks_and_plaintext(eg_a, res_a):
    c = res_a.connection(type="KAFKA", kafka_detail=KafkaConnectionDetail(
        instance_id="kafka-inst-2", addr="127.0.0.1:9", enable_sasl_ssl=False))
    b = body_of(c)
    assert b["kafka_detail"]["acks"] == "1"      # default [ug]
    assert b["kafka_detail"].get("password") in (None, "")


@pytest.mark.parametrize("kw", [
    dict(type="KAFKA"),                                                       # no kafka_detail
    dict(type="KAFKA", kafka_detail=KafkaConnectionDetail(instance_id="i", enable_sasl_ssl=False)),
    dict(type="KAFKA", kafka_detail=KafkaConnectionDetail(addr="127.0.0.1:9", enable_sasl_ssl=False)),
    dict(type="KAFKA", kafka_detail=KafkaConnectionDetail(              # SASL without credentials
        instance_id="i", addr="127.0.0.1:9", enable_sasl_ssl=True)),
    dict(type="KAFKA", kafka_detail=KafkaConnectionDetail(
        instance_id="i", addr="127.0.0.1:9", enable_sasl_ssl=False, acks="2")),
    dict(type="MQTT"),
    dict(vpc_id=None),
    dict(subnet_id=None),
    dict(vpc_id="v" * 129),
    dict(description="d" * 256),
], ids=["kafka-no-detail", "kafka-no-addr", "kafka-no-instance", "sasl-no-creds", "bad-acks",
        "bad-type", "no-vpc", "no-subnet", "vpc-129", "desc-256"])
def test_invalid_connection(eg_a, kw):
    name = uniq("conn")
    e = sdk_err(create_conn, eg_a, name=name, **kw)
    assert_eg_error(e, 400, "EG.00513000")
    assert eg_a.list_connections(ListConnectionsRequest(name=name)).total == 0


@pytest.mark.parametrize("name", ["default", "x" * 129, "-x", "a b", ""])
def test_invalid_connection_name(eg_a, name):
    before = eg_a.list_connections(ListConnectionsRequest(limit=1000)).total
    e = sdk_err(create_conn, eg_a, name=name)
    assert_eg_error(e, 400, "EG.00513000")
    assert eg_a.list_connections(ListConnectionsRequest(limit=1000)).total == before


def test_duplicate_connection_name(eg_a, res_a):
    c = res_a.connection()
    assert_eg_error(sdk_err(create_conn, eg_a, name=c.name), 400, "EG.00513001")
    assert eg_a.list_connections(ListConnectionsRequest(name=c.name)).total == 1


def test_update_kafka_password_masked(eg_a, res_a, raw_a):
    c = res_a.kafka_connection()
    r = raw_a.call("PUT", "/v1/{p}/connections/" + c.id,
                   body={"description": "rotated", "kafka_detail": {"user_name": "kuser2",
                                                                     "password": "new-pass-e2e"}})
    assert r.status == 200, r
    b = r.json()
    assert b["description"] == "rotated"
    assert b["kafka_detail"]["password"] == MASK
    assert b"new-pass-e2e" not in r.body
    assert b["kafka_detail"]["addr"] == "127.0.0.1:9"     # immutable, unchanged


def test_unknown_connection_404(eg_a):
    bogus = "00000000-0000-4000-8000-000000000000"
    assert_eg_error(sdk_err(show, eg_a, bogus), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.update_connection, UpdateConnectionRequest(
        connection_id=bogus, body=ConnectionUpdateReq(description="x"))), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.delete_connection, DeleteConnectionRequest(connection_id=bogus)),
                    404, "EG.00514001")


def test_connection_quota(eg_b, res_b):
    from huaweicloudsdkeg.v1 import ListQuotasRequest
    q = eg_b.list_quotas(ListQuotasRequest(type="CONNECTION")).quotas.resources[0]
    assert q.quota == 50
    for _ in range(q.quota - q.used):
        res_b.connection()
    name = uniq("conn")
    assert_eg_error(sdk_err(create_conn, eg_b, name=name), 403, "EG.00514003")
    assert eg_b.list_connections(ListConnectionsRequest(name=name)).total == 0
