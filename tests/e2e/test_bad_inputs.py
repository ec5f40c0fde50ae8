"""Bad inputs answered with the right EG error and NOTHING CHANGED
(docs/errors.md). Raw signed requests, because the SDK models would not send wrong types."""
import json
import socket

import pytest

from eglib import assert_eg_error, assert_request_id, uniq

N129 = "n" * 129


def snapshot(raw, what):
    r = raw.call("GET", f"/v1/{{p}}/{what}", query={"limit": 1000})
    assert r.status == 200, r
    b = r.json()
    return b["total"], sorted((i["id"], i.get("updated_time"), json.dumps(i, sort_keys=True))
                              for i in b["items"])


@pytest.fixture
def world(res_a):
    ch, src = res_a.app_setup()
    return {"ch": ch.id, "src": src.name}


def wh():
    return {"name": "WEBHOOK", "provider_type": "CUSTOM", "detail": {"url": "http://a.example/"},
            "transform": {"type": "ORIGINAL", "value": ""}}


def sub_body(w, **over):
    b = {"name": uniq("sub"), "channel_id": w["ch"],
         "sources": [{"name": w["src"], "provider_type": "CUSTOM",
                      "filter": {"source": [{"op": "StringIn", "values": [w["src"]]}]}}],
         "targets": [wh()]}
    b.update(over)
    return {k: v for k, v in b.items() if v is not _DROP}


_DROP = object()

# (resource list, request body factory(world) -> body (dict/str/bytes)) ; all POST -> 400 513000
CASES = {
    # channels
    "ch-not-json": ("channels", lambda w: b"{name: x"),
    "ch-empty-body": ("channels", lambda w: b""),
    "ch-array": ("channels", lambda w: []),
    "ch-string": ("channels", lambda w: "\"name\""),
    "ch-name-int": ("channels", lambda w: {"name": 123}),
    "ch-name-null": ("channels", lambda w: {"name": None}),
    "ch-no-name": ("channels", lambda w: {"description": "x"}),
    "ch-name-129": ("channels", lambda w: {"name": N129}),
    "ch-name-empty": ("channels", lambda w: {"name": ""}),
    "ch-name-space": ("channels", lambda w: {"name": "bad name"}),
    "ch-name-lead-dot": ("channels", lambda w: {"name": ".lead"}),
    "ch-name-unicode": ("channels", lambda w: {"name": "na\u00efve"}),
    "ch-desc-int": ("channels", lambda w: {"name": uniq("ch"), "description": 5}),
    "ch-desc-256": ("channels", lambda w: {"name": uniq("ch"), "description": "d" * 256}),
    "ch-cross-account-str": ("channels", lambda w: {"name": uniq("ch"), "cross_account": "yes"}),
    "ch-policy-str": ("channels", lambda w: {"name": uniq("ch"), "policy": "allow"}),
    # sources
    "src-name-int": ("sources", lambda w: {"name": 5, "channel_id": w["ch"]}),
    "src-no-name": ("sources", lambda w: {"channel_id": w["ch"]}),
    "src-name-129": ("sources", lambda w: {"name": N129, "channel_id": w["ch"]}),
    "src-type-int": ("sources", lambda w: {"name": uniq("src"), "channel_id": w["ch"], "type": 1}),
    "src-detail-str": ("sources", lambda w: {"name": uniq("src"), "channel_id": w["ch"],
                                             "type": "ROCKETMQ", "detail": "group=g"}),
    "src-desc-256": ("sources", lambda w: {"name": uniq("src"), "channel_id": w["ch"],
                                           "description": "d" * 256}),
    "src-not-json": ("sources", lambda w: b"\x00\x01"),
    # connections
    "conn-name-129": ("connections", lambda w: {"name": N129, "vpc_id": "v", "subnet_id": "s"}),
    "conn-no-name": ("connections", lambda w: {"vpc_id": "v", "subnet_id": "s"}),
    "conn-vpc-int": ("connections", lambda w: {"name": uniq("c"), "vpc_id": 5, "subnet_id": "s"}),
    "conn-type-int": ("connections", lambda w: {"name": uniq("c"), "vpc_id": "v",
                                                "subnet_id": "s", "type": 5}),
    "conn-kafka-detail-str": ("connections", lambda w: {"name": uniq("c"), "vpc_id": "v",
                                                        "subnet_id": "s", "type": "KAFKA",
                                                        "kafka_detail": "addr=x"}),
    "conn-sasl-str": ("connections", lambda w: {
        "name": uniq("c"), "vpc_id": "v", "subnet_id": "s", "type": "KAFKA",
        "kafka_detail": {"instance_id": "i", "addr": "127.0.0.1:9", "enable_sasl_ssl": "false"}}),
    "conn-not-json": ("connections", lambda w: b"[1,"),
    # subscriptions
    "sub-name-129": ("subscriptions", lambda w: sub_body(w, name=N129)),
    "sub-no-name": ("subscriptions", lambda w: sub_body(w, name=_DROP)),
    "sub-name-int": ("subscriptions", lambda w: sub_body(w, name=42)),
    "sub-name-bad-char": ("subscriptions", lambda w: sub_body(w, name="a/b")),
    "sub-channel-int": ("subscriptions", lambda w: sub_body(w, channel_id=7)),
    "sub-no-sources": ("subscriptions", lambda w: sub_body(w, sources=_DROP)),
    "sub-no-targets": ("subscriptions", lambda w: sub_body(w, targets=_DROP)),
    "sub-sources-object": ("subscriptions", lambda w: sub_body(w, sources={
        "name": w["src"], "provider_type": "CUSTOM",
        "filter": {"source": [{"op": "StringIn", "values": [w["src"]]}]}})),
    "sub-targets-string": ("subscriptions", lambda w: sub_body(w, targets="WEBHOOK")),
    "sub-retry-string": ("subscriptions", lambda w: sub_body(w, targets=[dict(wh(),
                                                                            retry_times="16")])),
    "sub-retry-float": ("subscriptions", lambda w: sub_body(w, targets=[dict(wh(),
                                                                           retry_times=1.5)])),
    "sub-transform-string": ("subscriptions", lambda w: sub_body(w, targets=[dict(
        wh(), transform="ORIGINAL")])),
    "sub-provider-int": ("subscriptions", lambda w: sub_body(w, sources=[{
        "name": w["src"], "provider_type": 1,
        "filter": {"source": [{"op": "StringIn", "values": [w["src"]]}]}}])),
    "sub-not-json": ("subscriptions", lambda w: b'{"name": "x",}'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_create_changes_nothing(raw_a, request, case):
    what, mk = CASES[case]
    # channel cases must not depend on sources working
    world = request.getfixturevalue("world") if what in ("sources", "subscriptions") else None
    before = snapshot(raw_a, what)
    r = raw_a.call("POST", f"/v1/{{p}}/{what}", body=mk(world))
    assert_eg_error(r, 400, "EG.00513000")
    assert snapshot(raw_a, what) == before


def test_name_128_accepted_everywhere(raw_a, res_a, world):
    n = "N" * 128
    r = raw_a.call("POST", "/v1/{p}/channels", body={"name": n})
    assert r.status == 200, r
    res_a.channels.append(r.json()["id"])
    r = raw_a.call("POST", "/v1/{p}/connections", body={"name": n, "vpc_id": "v", "subnet_id": "s"})
    assert r.status == 200, r
    res_a.conns.append(r.json()["id"])
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=sub_body(world, name=n))
    assert r.status == 200, r
    res_a.subs.append(r.json()["id"])
    assert r.json()["name"] == n


def test_unknown_fields_ignored(raw_a, res_a):
    name = uniq("ch")
    r = raw_a.call("POST", "/v1/{p}/channels", body={"name": name, "color": "blue",
                                                      "nested": {"a": 1}})
    assert r.status == 200, r
    res_a.channels.append(r.json()["id"])
    assert "color" not in r.json()


def test_bad_updates_change_nothing(raw_a, res_a, world):
    r = raw_a.call("POST", "/v1/{p}/connections", body={"name": uniq("c"), "vpc_id": "v",
                                                         "subnet_id": "s", "description": "orig"})
    cid = r.json()["id"]
    res_a.conns.append(cid)
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=sub_body(world))
    assert r.status == 200, r
    sid = r.json()["id"]
    res_a.subs.append(sid)
    ch = world["ch"]
    cases = [
        (f"/v1/{{p}}/channels/{ch}", {"description": 5}),
        (f"/v1/{{p}}/channels/{ch}", b"not json"),
        (f"/v1/{{p}}/channels/{ch}", {"description": "d" * 256}),
        (f"/v1/{{p}}/channels/{ch}", {"cross_account": "no"}),
        (f"/v1/{{p}}/connections/{cid}", {"description": ["x"]}),
        (f"/v1/{{p}}/connections/{cid}", {"description": "d" * 256}),
        (f"/v1/{{p}}/subscriptions/{sid}", {"description": 1}),
        (f"/v1/{{p}}/subscriptions/{sid}", {"targets": "x"}),
        (f"/v1/{{p}}/subscriptions/{sid}", {"targets": [dict(wh(), retry_times="3")]}),
        (f"/v1/{{p}}/subscriptions/{sid}", b"[]"),
    ]
    for path, body in cases:
        before = raw_a.call("GET", path).json()
        r = raw_a.call("PUT", path, body=body)
        assert_eg_error(r, 400, "EG.00513000")
        assert raw_a.call("GET", path).json() == before, path


def test_execute_operation_wrong_types(raw_a, res_a, world):
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=sub_body(world))
    sid = r.json()["id"]
    res_a.subs.append(sid)
    for body in [{"subscription_ids": sid, "operation": "DISABLE"},
                 {"subscription_ids": [sid], "operation": 1},
                 {"subscription_ids": [5], "operation": "DISABLE"},
                 {"operation": "DISABLE"},
                 b"nope"]:
        r = raw_a.call("POST", "/v1/{p}/subscriptions/operation", body=body)
        assert_eg_error(r, 400, "EG.00513000")
    assert raw_a.call("GET", f"/v1/{{p}}/subscriptions/{sid}").json()["status"] == "ENABLED"


def _raw_socket_request(raw, head: bytes, body_len: int):
    s = socket.create_connection((raw.host, raw.port), timeout=30)
    try:
        s.sendall(head)
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < body_len:
                n = min(len(chunk), body_len - sent)
                s.sendall(chunk[:n])
                sent += n
        except OSError:
            pass
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
                if b"\r\n\r\n" in data:
                    h, _, rest = data.partition(b"\r\n\r\n")
                    cl = [ln for ln in h.split(b"\r\n") if ln.lower().startswith(b"content-length")]
                    if cl and len(rest) >= int(cl[0].split(b":")[1]):
                        break
        except OSError:
            pass
        return data
    finally:
        s.close()


def _parse(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {ln.split(b":", 1)[0].decode().lower(): ln.split(b":", 1)[1].strip().decode()
               for ln in lines[1:] if b":" in ln}
    return status, headers, json.loads(body or b"null")


def test_body_over_12_mib_is_413(raw_a):
    before = snapshot(raw_a, "channels")
    n = 12 * 1024 * 1024 + 1
    head = (f"POST /v1/{raw_a.project}/channels HTTP/1.1\r\nHost: {raw_a.authority}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {n}\r\n"
            "Connection: close\r\n\r\n").encode()
    status, headers, body = _parse(_raw_socket_request(raw_a, head, n))
    assert status == 413
    assert body["error_code"] == "APIGW.0201" and body["error_msg"]
    assert_request_id(headers.get("x-request-id"))
    assert snapshot(raw_a, "channels") == before


def test_uri_over_8_kib_is_414(raw_a):
    r = raw_a.call("GET", "/v1/{p}/channels", query={"name": "x" * 9000})
    assert_eg_error(r, 414, "APIGW.0201")


def test_headers_over_32_kib_is_431(raw_a):
    r = raw_a.call("GET", "/v1/{p}/channels", headers={"X-Big": "y" * 40000})
    assert_eg_error(r, 431, "APIGW.0201")
