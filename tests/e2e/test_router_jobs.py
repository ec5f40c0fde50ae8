"""Professional event-router clusters (ops 71–76; docs/limits.md).

The SDK has no operations for these: every request is raw and signed.
"""
import pytest

from dataplane import wait_until
from eglib import TIME_RE, UUID_RE, assert_eg_error, assert_request_id, uniq

CLUSTERS = "/v1/{p}/eventrouter/clusters"


def cluster_body(**kw):
    b = {
        "name": uniq("cl"),
        "description": "router cluster",
        "source_type": "KAFKA",
        "sink_type": "KAFKA",
        "vpc_id": "vpc-1",
        "subnet_id": "subnet-1",
        "zone_names": "az1",
        "bss_param": {"charging_mode": "postPaid"},
        "flavor": "small",
        "public_access_enabled": False,
    }
    b.update(kw)
    return b


@pytest.fixture
def cluster(raw_a):
    """Creates a cluster and deletes it afterwards (if the test did not)."""
    made = []

    def make(**kw):
        r = raw_a.call("POST", CLUSTERS, body=cluster_body(**kw))
        assert r.status == 200, r
        made.append(r.json()["cluster_id"])
        return r.json()

    yield make
    for cid in made:
        raw_a.call("DELETE", f"{CLUSTERS}/{cid}")


def count_clusters(raw):
    r = raw.call("GET", CLUSTERS, query={"limit": "1000"})
    assert r.status == 200, r
    return r.json()["total"]


def test_availability_zones(raw_a):
    r = raw_a.call("GET", CLUSTERS + "/availability-zone")
    assert r.status == 200, r
    assert_request_id(r.header("X-Request-Id"))
    assert r.json() == {"zone_names": ["az1"]}


def test_cluster_crud(raw_a, cluster):
    c = cluster(public_access_enabled=True, eip_id="eip-1", nat_id="nat-1")
    cid = c["cluster_id"]
    assert UUID_RE.match(cid)
    assert c["status"] == "RUNNING" and c["job_count"] == 0
    for k, v in {"description": "router cluster", "source_type": "KAFKA", "sink_type": "KAFKA",
                 "vpc_id": "vpc-1", "subnet_id": "subnet-1", "zone_names": "az1",
                 "flavor": "small", "charging_mode": "postPaid",
                 "public_access_enabled": True, "eip_id": "eip-1", "nat_id": "nat-1"}.items():
        assert c[k] == v, (k, c)
    assert TIME_RE.match(c["created_time"]) and TIME_RE.match(c["updated_time"])
    assert "bss_param" not in c

    r = raw_a.call("GET", f"{CLUSTERS}/{cid}")
    assert r.status == 200, r
    assert r.json() == c

    new_name = uniq("cl2")
    r = raw_a.call("PUT", f"{CLUSTERS}/{cid}",
                   body={"name": new_name, "description": "changed",
                         "public_access_enabled": False})
    assert r.status == 200, r
    u = r.json()
    assert u["name"] == new_name and u["description"] == "changed"
    assert u["public_access_enabled"] is False
    assert u["source_type"] == "KAFKA" and u["created_time"] == c["created_time"]
    r = raw_a.call("GET", f"{CLUSTERS}/{cid}")
    assert r.json()["name"] == new_name

    r = raw_a.call("DELETE", f"{CLUSTERS}/{cid}")
    assert r.status == 200, r
    assert r.json() == {"cluster_id": cid}
    for method in ("GET", "DELETE"):
        assert_eg_error(raw_a.call(method, f"{CLUSTERS}/{cid}"), 404, "EG.00514001")
    assert_eg_error(raw_a.call("PUT", f"{CLUSTERS}/{cid}", body={"description": "x"}),
                    404, "EG.00514001")


def test_cluster_list_paging_and_fuzzy_name(raw_a, cluster):
    tag = uniq("fz")
    ids = [cluster(name=f"{tag}-{i}")["cluster_id"] for i in range(3)]
    r = raw_a.call("GET", CLUSTERS, query={"fuzzy_name": tag})
    assert r.status == 200, r
    body = r.json()
    assert body["total"] == 3 and body["size"] == 3
    assert sorted(c["cluster_id"] for c in body["items"]) == sorted(ids)
    assert all(c["job_count"] == 0 and c["status"] == "RUNNING" for c in body["items"])

    seen = []
    for off in range(3):
        r = raw_a.call("GET", CLUSTERS, query={"fuzzy_name": tag, "offset": str(off),
                                                "limit": "1"})
        assert r.status == 200, r
        b = r.json()
        assert b["total"] == 3 and b["size"] == 1
        seen.append(b["items"][0]["cluster_id"])
    assert sorted(seen) == sorted(ids)
    r = raw_a.call("GET", CLUSTERS, query={"fuzzy_name": tag, "offset": "3"})
    assert r.json()["items"] == [] and r.json()["total"] == 3

    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"offset": "-1"}):
        assert_eg_error(raw_a.call("GET", CLUSTERS, query=bad), 400, "EG.00513000")


def test_cluster_projects_isolated(raw_a, raw_b, cluster):
    cid = cluster()["cluster_id"]
    assert_eg_error(raw_b.call("GET", f"{CLUSTERS}/{cid}"), 404, "EG.00514001")
    assert_eg_error(raw_b.call("DELETE", f"{CLUSTERS}/{cid}"), 404, "EG.00514001")
    r = raw_a.call("GET", f"{CLUSTERS}/{cid}")
    assert r.status == 200


@pytest.mark.parametrize("change", [
    {"name": None},
    {"name": "-starts-with-dash"},
    {"name": "n" * 129},
    {"description": "d" * 257},
    {"source_type": None},
    {"source_type": "RABBITMQ"},
    {"sink_type": "ROCKETMQ"},
    {"vpc_id": None},
    {"subnet_id": ""},
    {"bss_param": {}},
    {"public_access_enabled": None},
    {"public_access_enabled": "true"},
    {"public_access_enabled": True},
    {"zone_names": ["az1"]},
])
def test_cluster_create_invalid(raw_a, change):
    before = count_clusters(raw_a)
    body = cluster_body()
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    r = raw_a.call("POST", CLUSTERS, body=body)
    assert_eg_error(r, 400, "EG.00513000")
    field = next(iter(change))
    msg = r.json()["error_msg"]
    assert field in msg or (field == "public_access_enabled" and "eip_id" in msg), msg
    assert count_clusters(raw_a) == before


def test_cluster_create_bad_json(raw_a):
    assert_eg_error(raw_a.call("POST", CLUSTERS, body=b"{nope"), 400, "EG.00513000")
    assert_eg_error(raw_a.call("POST", CLUSTERS, body=[1]), 400, "EG.00513000")


def test_cluster_duplicate_name(raw_a, cluster):
    c = cluster()
    r = raw_a.call("POST", CLUSTERS, body=cluster_body(name=c["name"]))
    assert_eg_error(r, 400, "EG.00513001")


def test_cluster_update_invalid_changes_nothing(raw_a, cluster):
    c = cluster()
    cid = c["cluster_id"]
    for body in ({"name": "!bad"}, {"description": "d" * 257},
                 {"public_access_enabled": True}, {"nat_id": 5},
                 {"public_access_enabled": "no"}):
        assert_eg_error(raw_a.call("PUT", f"{CLUSTERS}/{cid}", body=body), 400, "EG.00513000")
    r = raw_a.call("GET", f"{CLUSTERS}/{cid}")
    assert r.json() == c


def test_cluster_types_must_match(raw_a, cluster):
    for t in ("ROCKETMQ", "DCS"):
        c = cluster(source_type=t, sink_type=t)
        assert c["source_type"] == c["sink_type"] == t


def test_cluster_ceiling(raw_b):
    """docs/limits.md: at most 50 clusters per project → 403 EG.00514003."""
    made = []
    try:
        existing = count_clusters(raw_b)
        for _ in range(50 - existing):
            r = raw_b.call("POST", CLUSTERS, body=cluster_body())
            assert r.status == 200, r
            made.append(r.json()["cluster_id"])
        r = raw_b.call("POST", CLUSTERS, body=cluster_body())
        assert_eg_error(r, 403, "EG.00514003")
        assert count_clusters(raw_b) == 50
    finally:
        for cid in made:
            raw_b.call("DELETE", f"{CLUSTERS}/{cid}")


# ------------------------------------------------------------------------------------ jobs
# ops 63–70.

import socket  # noqa: E402
import threading  # noqa: E402

JOBS = "/v1/{p}/eventrouter/jobs"


def kafka_ep(address, **kw):
    e = {"config_type": "CLOUD", "region": "r1", "project_id": "p1", "instance_id": "i1",
         "cluster_alias": "a", "address": address, "user_name": "", "password": None,
         "authenticate_mode": "PLAINTEXT", "sasl_mechanism": ""}
    e.update(kw)
    return e


def job_body(cluster_id, **kw):
    """The reference's example shape: one-element arrays, "" / null for unset members."""
    b = {
        "cluster_id": cluster_id,
        "name": uniq("job"),
        "scene_type": "DISASTER_BACKUP",
        "description": "",
        "source_config": [{"source_kafka": [kafka_ep("127.0.0.1:1")]}],
        "sink_config": [{"sink_kafka": [kafka_ep("127.0.0.2:1", region="r2",
                                                 instance_id="sink-i")]}],
        "advance_config": [{"kafka2kafka": [{
            "topics": "t01", "topic_regex": "", "task_cnt": None, "topic_mappings": [],
            "rename_topic": False, "is_add_header": False, "is_sync_progress": False,
            "replica_cnt": 1, "seek_to": "earliest", "compress_alg": "none"}]}],
    }
    b.update(kw)
    return b


@pytest.fixture
def job(raw_a, cluster):
    made = []

    def make(cluster_id=None, **kw):
        cid = cluster_id or cluster()["cluster_id"]
        r = raw_a.call("POST", JOBS, body=job_body(cid, **kw))
        assert r.status == 200, r
        made.append(r.json()["job_id"])
        return r.json()

    yield make
    for jid in made:
        raw_a.call("DELETE", f"{JOBS}/{jid}")


def test_job_crud_and_cluster_conflict(raw_a, cluster, job):
    c = cluster()
    cid = c["cluster_id"]
    j = job(cid, sink_config={"sink_kafka": kafka_ep(
        "127.0.0.2:1", authenticate_mode="SASL_SSL", user_name="u", password="s3cret")})
    jid = j["job_id"]
    assert UUID_RE.match(jid)
    assert j["cluster_id"] == cid and j["scene_type"] == "DISASTER_BACKUP"
    assert j["source_type"] == j["sink_type"] == "KAFKA"
    assert j["vpc_id"] == "vpc-1" and j["subnet_id"] == "subnet-1"
    assert j["status"] == "WAIT_START"
    assert j["source_status"] == j["sink_status"] == "UNDEFINED"
    assert TIME_RE.match(j["created_time"])
    src = j["source_config"]["source_kafka"]
    assert src["address"] == "127.0.0.1:1" and "password" not in src and "user_name" not in src
    assert j["sink_config"]["sink_kafka"]["password"] == "******"
    assert j["advance_config"]["kafka2kafka"]["topics"] == "t01"
    assert "topic_regex" not in j["advance_config"]["kafka2kafka"]
    assert not any(k.startswith("_") for k in j)
    assert b"s3cret" not in raw_a.call("GET", f"{JOBS}/{jid}").body

    r = raw_a.call("GET", f"{JOBS}/{jid}")
    assert r.status == 200 and r.json() == j
    assert raw_a.call("GET", f"{CLUSTERS}/{cid}").json()["job_count"] == 1

    # cluster with a job cannot be deleted
    assert_eg_error(raw_a.call("DELETE", f"{CLUSTERS}/{cid}"), 409, "EG.00514002")

    # full replacement; ****** keeps the stored password
    body = job_body(cid, name=j["name"], description="v2",
                    sink_config={"sink_kafka": kafka_ep(
                        "127.0.0.3:1", authenticate_mode="SASL_SSL", user_name="u",
                        password="******")},
                    advance_config=None)
    r = raw_a.call("PUT", f"{JOBS}/{jid}", body=body)
    assert r.status == 200, r
    u = r.json()
    assert u["description"] == "v2" and "advance_config" not in u   # unset: omitted
    assert u["sink_config"]["sink_kafka"]["address"] == "127.0.0.3:1"
    assert u["sink_config"]["sink_kafka"]["password"] == "******"
    assert u["created_time"] == j["created_time"]

    r = raw_a.call("DELETE", f"{JOBS}/{jid}")
    assert r.status == 200 and r.json() == {"job_id": jid}
    for method in ("GET", "DELETE"):
        assert_eg_error(raw_a.call(method, f"{JOBS}/{jid}"), 404, "EG.00514001")
    assert raw_a.call("GET", f"{CLUSTERS}/{cid}").json()["job_count"] == 0
    assert raw_a.call("DELETE", f"{CLUSTERS}/{cid}").status == 200


def test_job_no_configuration(raw_a, job):
    j = job(source_config=None, sink_config="", advance_config=[])
    assert j["status"] == "NO_CONFIGURATION"
    assert "source_config" not in j and "sink_config" not in j     # unset: omitted
    r = raw_a.call("POST", f"{JOBS}/{j['job_id']}/action", body={"operation": "START"})
    assert_eg_error(r, 400, "EG.00513000")


def test_job_list_filters_and_paging(raw_a, cluster, job):
    cid = cluster()["cluster_id"]
    tag = uniq("jf")
    ids = [job(cid, name=f"{tag}-{i}")["job_id"] for i in range(3)]
    other = job(name=f"{tag}-x", sink_config={"sink_kafka": kafka_ep(
        "10.9.9.9:1", region="r9", instance_id="other-i")})
    r = raw_a.call("GET", JOBS, query={"fuzzy_name": tag})
    assert r.status == 200 and r.json()["total"] == 4
    r = raw_a.call("GET", JOBS, query={"cluster_id": cid})
    assert sorted(x["job_id"] for x in r.json()["items"]) == sorted(ids)
    for q in ({"sink_region": "r9"}, {"sink_instance_id": "other-i"},
              {"sink_address": "10.9.9.9:1"}):
        r = raw_a.call("GET", JOBS, query={"fuzzy_name": tag, **q})
        assert [x["job_id"] for x in r.json()["items"]] == [other["job_id"]], q
    r = raw_a.call("GET", JOBS, query={"fuzzy_name": tag, "status": "WAIT_START",
                                       "offset": "1", "limit": "2"})
    b = r.json()
    assert b["total"] == 4 and b["size"] == 2
    r = raw_a.call("GET", JOBS, query={"fuzzy_name": tag, "status": "RUNNING"})
    assert r.json()["total"] == 0
    assert_eg_error(raw_a.call("GET", JOBS, query={"limit": "0"}), 400, "EG.00513000")


def test_job_action(raw_a, job):
    j = job()
    jid = j["job_id"]
    path = f"{JOBS}/{jid}/action"
    r = raw_a.call("POST", path, body={"operation": "START", "config": {"switch_now": False}})
    assert r.status == 200 and r.json() == {"job_id": jid}
    # started, and nothing listens at the source's address: ERROR (never RUNNING), and once
    # the connection attempt gave up, the reason names the side and source_status says it
    g = raw_a.call("GET", f"{JOBS}/{jid}").json()
    assert g["status"] == "ERROR" and g["err_code"] == "EG.00511000", g

    # (source_status is the finding of the node running the job: in a cluster, asked
    # through a proxy, the answer comes from that node now and then)
    def failed():
        g = raw_a.call("GET", f"{JOBS}/{jid}").json()
        return g if ("source cluster" in (g.get("err_message") or "")
                     and g.get("source_status") == "ABNORMAL") else None
    g = wait_until(failed, 60, "the source connection to fail")
    assert g["status"] == "ERROR" and g["err_code"] == "EG.00511000", g
    assert g["source_status_info"], g
    r = raw_a.call("POST", path, body={"operation": "STOP"})
    assert r.status == 200
    g = raw_a.call("GET", f"{JOBS}/{jid}").json()
    assert g["status"] == "STOPPED" and "err_code" not in g and "err_message" not in g, g
    # switchover: the source address swaps roles, the sink address is a no-op
    r = raw_a.call("POST", path, body={"operation": "START",
                                       "config": {"sink_address": "127.0.0.2:1"}})
    assert r.status == 200
    assert raw_a.call("GET", f"{JOBS}/{jid}").json()["sink_config"]["sink_kafka"][
        "address"] == "127.0.0.2:1"
    # A careful switch (switch_now false) needs a running job with nothing left to copy;
    # this one does not run (nothing listens at its source).
    r = raw_a.call("POST", path, body={"operation": "START",
                                       "config": {"sink_address": "127.0.0.1:1"}})
    assert_eg_error(r, 400, "EG.00513000")
    assert "switch_now" in r.json()["error_msg"], r.json()
    assert raw_a.call("GET", f"{JOBS}/{jid}").json()["sink_config"]["sink_kafka"][
        "address"] == "127.0.0.2:1"
    r = raw_a.call("POST", path, body={"operation": "START",
                                       "config": {"sink_address": "127.0.0.1:1",
                                                  "switch_now": True}})
    assert r.status == 200
    s = raw_a.call("GET", f"{JOBS}/{jid}").json()
    assert s["sink_config"]["sink_kafka"]["address"] == "127.0.0.1:1"
    assert s["source_config"]["source_kafka"]["address"] == "127.0.0.2:1"
    for bad in ({"operation": "PAUSE"}, {}, {"operation": "START",
                                             "config": {"sink_address": "9.9.9.9:9"}},
                {"operation": "START", "config": {"switch_now": "yes"}}):
        assert_eg_error(raw_a.call("POST", path, body=bad), 400, "EG.00513000")
    assert_eg_error(raw_a.call("POST", f"{JOBS}/{UUID_ZERO}/action",
                               body={"operation": "START"}), 404, "EG.00514001")


UUID_ZERO = "00000000-0000-4000-8000-000000000000"


def test_job_validation(raw_a, cluster):
    cid = cluster()["cluster_id"]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)],
                     daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    try:
        body = {"cluster_id": cid,
                "source_config": {"source_kafka": kafka_ep(f"127.0.0.1:{port}")},
                "sink_config": {"sink_kafka": kafka_ep(f"127.0.0.1:{dead}")}}
        r = raw_a.call("POST", JOBS + "/validation", query={"validate_type": "SOURCE_NETWORK"},
                       body=body)
        assert r.status == 200, r
        res = r.json()["results"]
        # The port accepts connections but is not Kafka: past the TCP check, the metadata
        # request fails (a Kafka broker passes: test_router_runtime).
        assert len(res) == 1 and res[0]["status"] == "FAILED", res
        assert "Kafka check" in res[0]["reason"], res
        assert res[0]["check_item_name"] == "SOURCE_NETWORK"
        r = raw_a.call("POST", JOBS + "/validation", query={"validate_type": "SINK_NETWORK"},
                       body=body)
        res = r.json()["results"]
        assert len(res) == 1 and res[0]["status"] == "FAILED" and res[0]["reason"]
    finally:
        srv.close()
    assert_eg_error(raw_a.call("POST", JOBS + "/validation", query={"validate_type": "X"},
                               body=body), 400, "EG.00513000")
    assert_eg_error(raw_a.call("POST", JOBS + "/validation", body={}), 400, "EG.00513000")


def test_job_sync_detail(raw_a, job):
    jid = job()["job_id"]
    path = f"{JOBS}/{jid}/syncDetail"
    r = raw_a.call("POST", path, body={"offset": 0, "limit": 10, "conditions": [
        {"key": "topic", "operate": "LIKE", "value": "t"}]})
    assert r.status == 200, r
    # no replication runs: no invented figures, an explicit state instead
    b = r.json()
    assert b["state"] == "NOT_RUNNING" and "not run" in b["state_detail"], b
    assert b["metadata"] == {} and b["items"] == [] and b["type"] == "KAFKA", b
    assert b["total"] == 0 and b["size"] == 0
    for bad in ({"limit": 10}, {"offset": 0}, {"offset": 0, "limit": 9},
                {"offset": 10001, "limit": 10},
                {"offset": 0, "limit": 10, "conditions": [{"key": "x", "operate": "EQUAL"}]}):
        assert_eg_error(raw_a.call("POST", path, body=bad), 400, "EG.00513000")


@pytest.mark.parametrize("change,field", [
    ({"name": None}, "name"),
    ({"scene_type": "OTHER"}, "scene_type"),
    ({"scene_type": None}, "scene_type"),
    ({"description": "d" * 257}, "description"),
    ({"source_config": {"source_kafka": kafka_ep("a:1", region="")}},
     "source_config.source_kafka.region"),
    ({"source_config": {"source_rocketmq": kafka_ep("a:1")}}, "source_config.source_rocketmq"),
    ({"sink_config": {"sink_kafka": kafka_ep("a:1"), "sink_dcs": kafka_ep("a:1")}},
     "sink_config"),
    ({"sink_config": {"sink_kafka": kafka_ep("a:1", authenticate_mode="SASL_SSL")}},
     "sink_config.sink_kafka.password"),
    ({"advance_config": {"kafka2kafka": {"topics": "a", "topic_regex": "b"}}}, "topic_regex"),
    ({"advance_config": {"kafka2kafka": {"topics": "a", "replica_cnt": 1,
                                         "seek_to": "latest", "compress_alg": "brotli",
                                         "is_sync_progress": True, "is_add_header": True}}},
     "advance_config.kafka2kafka.compress_alg"),
    ({"advance_config": {"dcs2dcs": {"synchronize_type": "full"}}}, "dcs2dcs"),
])
def test_job_create_invalid(raw_a, cluster, change, field):
    cid = cluster()["cluster_id"]
    body = job_body(cid)
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    r = raw_a.call("POST", JOBS, body=body)
    assert_eg_error(r, 400, "EG.00513000")
    assert field in r.json()["error_msg"], r.json()
    assert raw_a.call("GET", JOBS, query={"cluster_id": cid}).json()["total"] == 0


def test_job_unknown_cluster_and_update_invalid(raw_a, job):
    assert_eg_error(raw_a.call("POST", JOBS, body=job_body(UUID_ZERO)), 404, "EG.00514001")
    j = job()
    jid = j["job_id"]
    for body in (job_body(j["cluster_id"], scene_type="X"),
                 job_body(j["cluster_id"], name="!"),
                 job_body(UUID_ZERO)):
        r = raw_a.call("PUT", f"{JOBS}/{jid}", body=body)
        assert_eg_error(r, 400, "EG.00513000")
    assert raw_a.call("GET", f"{JOBS}/{jid}").json() == j


def test_job_other_families(raw_a, cluster, job):
    cid = cluster(source_type="DCS", sink_type="DCS")["cluster_id"]
    ep = {"config_type": "CLOUD", "region": "r", "project_id": "p", "address": "h:6379",
          "password": "redis-pw"}
    j = job(cid, source_config={"source_dcs": ep}, sink_config={"sink_dcs": ep},
            advance_config={"dc2dc": {"synchronize_type": "full", "connect_retry_time": "60",
                                      "other_retry_time": "60", "use_slave_node": True}})
    assert j["source_type"] == "DCS"
    assert j["source_config"]["source_dcs"]["password"] == "******"
    assert j["advance_config"] == {"dcs2dcs": {"synchronize_type": "full",
                                               "connect_retry_time": "60",
                                               "other_retry_time": "60",
                                               "use_salve_node": True}}
    r = raw_a.call("POST", f"{JOBS}/{j['job_id']}/syncDetail", body={"offset": 0, "limit": 10})
    assert r.json()["type"] == "DCS"
    rid = cluster(source_type="ROCKETMQ", sink_type="ROCKETMQ")["cluster_id"]
    rep = {"config_type": "CLOUD", "region": "r", "project_id": "p", "instance_id": "i",
           "cluster_alias": "a", "address": "h:8100", "ssl_open": "false", "acl_open": True,
           "user_name": "u", "password": "mq-pw"}
    j = job(rid, source_config={"source_rocketmq": rep}, sink_config={"sink_rocketmq": rep},
            advance_config={"rocketmq2rocketmq": {"topic_regex": "t.*", "is_sync_progress": True,
                                                  "seek_to": "1700000000000",
                                                  "compress_alg": "lz4"}})
    assert j["sink_config"]["sink_rocketmq"]["password"] == "******"
    assert j["advance_config"]["rocketmq2rocketmq"]["seek_to"] == "1700000000000"
