"""Authentication: docs/signing.md, docs/errors.md (APIGW.0301, EG.00512000)."""
import datetime as dt

import pytest
from huaweicloudsdkeg.v1 import ListChannelsRequest

from eglib import assert_eg_error, assert_request_id, sdk_date, uniq


def channel_exists(eg, name) -> bool:
    r = eg.list_channels(ListChannelsRequest(name=name, limit=1000))
    return any(c.name == name for c in r.items)


def test_sdk_baseline(eg_a):
    r = eg_a.list_channels(ListChannelsRequest())
    assert r.status_code == 200
    assert any(c.name == "default" for c in r.items)


def test_raw_signer_baseline(raw_a):
    r = raw_a.call("GET", "/v1/{p}/channels")
    assert r.status == 200, r
    assert_request_id(r.header("X-Request-Id"))
    assert r.header("Content-Type").lower().startswith("application/json")


def test_raw_signed_create_and_trailing_slash(raw_a, eg_a):
    name = uniq("auth-ok")
    r = raw_a.call("POST", "/v1/{p}/channels", body={"name": name})
    assert r.status == 200, r
    cid = r.json()["id"]
    r = raw_a.call("GET", "/v1/{p}/channels/" + cid + "/")
    assert r.status == 200, r
    r = raw_a.call("DELETE", "/v1/{p}/channels/" + cid)
    assert r.status == 204, r
    assert r.body == b""
    assert_request_id(r.header("X-Request-Id"))


def test_whitespace_after_commas_tolerated(raw_a):
    req = raw_a.prepare("GET", "/v1/{p}/channels").sign(raw_a.ak, raw_a.sk)
    req.headers["Authorization"] = req.headers["Authorization"].replace(", ", ",   ")
    assert raw_a.send(req).status == 200


def test_skew_14_minutes_accepted(raw_a):
    assert raw_a.call("GET", "/v1/{p}/channels", date=sdk_date(-14 * 60)).status == 200
    assert raw_a.call("GET", "/v1/{p}/channels", date=sdk_date(14 * 60)).status == 200


def test_identical_request_twice_accepted(raw_a):
    """Replay protection is off by default [dec] — same signature twice is fine."""
    req = raw_a.prepare("GET", "/v1/{p}/channels").sign(raw_a.ak, raw_a.sk)
    assert raw_a.send(req).status == 200
    assert raw_a.send(req).status == 200


def _flip(sig_header):
    head, sig = sig_header.rsplit("Signature=", 1)
    return head + "Signature=" + sig[:-1] + ("0" if sig[-1] != "0" else "1")


# Each case: fn(raw, req_builder) -> Req ready to send. Must be 401 APIGW.0301 and not executed.
def case_tampered_signature(raw, req):
    req.sign(raw.ak, raw.sk)
    req.headers["Authorization"] = _flip(req.headers["Authorization"])


def case_unknown_ak(raw, req):
    req.sign("AKUNKNOWNE2E000000001", raw.sk)


def case_wrong_sk(raw, req):
    req.sign(raw.ak, raw.sk[:-1] + ("x" if raw.sk[-1] != "x" else "y"))


def case_no_credential(raw, req):
    pass


def case_bearer(raw, req):
    req.headers["Authorization"] = "Bearer abcdefghijklmnop"


def case_v11_scheme(raw, req):
    req.sign(raw.ak, raw.sk)
    req.headers["Authorization"] = req.headers["Authorization"].replace(
        "SDK-HMAC-SHA256", "V11-HMAC-SHA256")


def case_sdk_date_removed(raw, req):
    req.sign(raw.ak, raw.sk)
    del req.headers["X-Sdk-Date"]


def case_date_16min_past(raw, req):
    req.sign(raw.ak, raw.sk, date=sdk_date(-16 * 60))


def case_date_16min_future(raw, req):
    req.sign(raw.ak, raw.sk, date=sdk_date(16 * 60))


def case_date_malformed(raw, req):
    req.headers["X-Sdk-Date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    req.sign(raw.ak, raw.sk)


def case_body_changed(raw, req):
    req.sign(raw.ak, raw.sk)
    req.body = req.body.replace(b'"auth-', b'"AUTH-')


def case_query_changed(raw, req):
    req.sign(raw.ak, raw.sk)
    req.query.append(("enterprise_project_id", "0"))


def case_header_changed(raw, req):
    req.sign(raw.ak, raw.sk)
    req.headers["User-Agent"] = "someone-else/1.0"


def case_method_changed(raw, req):
    req.method = "PUT"
    req.sign(raw.ak, raw.sk)
    req.method = "POST"


def case_host_not_signed(raw, req):
    req.sign(raw.ak, raw.sk, exclude=["host"])


def case_sdk_date_not_signed(raw, req):
    req.sign(raw.ak, raw.sk, exclude=["x-sdk-date"])


def case_signature_not_hex(raw, req):
    req.sign(raw.ak, raw.sk)
    h, _ = req.headers["Authorization"].rsplit("Signature=", 1)
    req.headers["Authorization"] = h + "Signature=" + "z" * 64


def case_signature_short(raw, req):
    req.sign(raw.ak, raw.sk)
    req.headers["Authorization"] = req.headers["Authorization"][:-2]


def case_signed_header_missing(raw, req):
    req.headers["X-Extra"] = "1"
    req.sign(raw.ak, raw.sk)
    del req.headers["X-Extra"]


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_signature_is_401_and_not_executed(raw_a, eg_a, case):
    name = uniq("auth-" + case.__name__[5:].replace("_", "-"))
    req = raw_a.prepare("POST", "/v1/{p}/channels", body={"name": name})
    case(raw_a, req)
    r = raw_a.send(req)
    assert_eg_error(r, 401, "APIGW.0301")
    assert r.json()["error_msg"].startswith("Incorrect IAM authentication information")
    assert not channel_exists(eg_a, name)
    assert not channel_exists(eg_a, name.replace("auth-", "AUTH-"))


def test_unknown_ak_and_wrong_signature_same_message(raw_a):
    """docs/errors.md: same detail for unknown AK and signature mismatch (no AK oracle)."""
    r1 = raw_a.call("GET", "/v1/{p}/channels", sign=False)
    req = raw_a.prepare("GET", "/v1/{p}/channels")
    case_unknown_ak(raw_a, req)
    r2 = raw_a.send(req)
    req = raw_a.prepare("GET", "/v1/{p}/channels")
    case_wrong_sk(raw_a, req)
    r3 = raw_a.send(req)
    for r in (r1, r2, r3):
        assert_eg_error(r, 401, "APIGW.0301")
    assert r2.json()["error_msg"] == r3.json()["error_msg"]


def test_401_on_get_has_request_id(raw_a):
    r = raw_a.call("GET", "/v1/{p}/quotas", sign=False)
    assert_eg_error(r, 401, "APIGW.0301")


def test_other_project_path_is_403(raw_a, eg_b, pb):
    name = uniq("auth-xproj")
    req = raw_a.prepare("POST", f"/v1/{pb}/channels", body={"name": name}, project_header=False)
    req.sign(raw_a.ak, raw_a.sk)
    r = raw_a.send(req)
    assert_eg_error(r, 403, "EG.00512000")
    assert not channel_exists(eg_b, name)


def test_other_project_path_with_x_project_id_is_403(raw_a, eg_b, pb):
    name = uniq("auth-xproj")
    req = raw_a.prepare("POST", f"/v1/{pb}/channels", body={"name": name},
                        headers={"X-Project-Id": pb}, project_header=False)
    req.sign(raw_a.ak, raw_a.sk)
    assert_eg_error(raw_a.send(req), 403, "EG.00512000")
    assert not channel_exists(eg_b, name)


def test_x_project_id_mismatch_is_403(raw_a, eg_a, pb):
    name = uniq("auth-xpid")
    req = raw_a.prepare("POST", "/v1/{p}/channels", body={"name": name},
                        headers={"X-Project-Id": pb}, project_header=False)
    req.sign(raw_a.ak, raw_a.sk)
    assert_eg_error(raw_a.send(req), 403, "EG.00512000")
    assert not channel_exists(eg_a, name)


def test_unknown_route_is_404_even_without_credentials(raw_a):
    for r in (raw_a.anon("GET", "/v1/{p}/no-such-resource"),
              raw_a.call("GET", "/v1/{p}/no-such-resource"),
              raw_a.call("PATCH", "/v1/{p}/channels"),
              raw_a.call("OPTIONS", "/v1/{p}/channels"),
              raw_a.call("DELETE", "/v1/{p}/channels"),
              raw_a.anon("GET", "/v2/whatever")):
        assert_eg_error(r, 404, "APIGW.0101")
        assert r.json()["error_msg"].startswith(
            "The API does not exist or has not been published in the environment")


# ----------------------------------------------------------------------------- tokens

def token_body(c, project=None, domain=True, scope=True):
    user = {"name": c.ak, "password": c.sk}
    if domain:
        user["domain"] = {"name": c.domain}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    if scope:
        body["auth"]["scope"] = {"project": {"id": project or c.project}}
    return body


def get_token(raw, cred, **kw):
    r = raw.anon("POST", "/v3/auth/tokens", body=token_body(cred, **kw))
    assert r.status == 201, r
    tok = r.header("X-Subject-Token")
    assert tok and len(tok) >= 40, tok
    return r, tok


def test_token_issue_and_use(raw_a, eg_a, server):
    r, tok = get_token(raw_a, server.a)
    assert_request_id(r.header("X-Request-Id"))
    body = r.json()["token"]
    assert body["project"]["id"] == server.a.project
    assert body["methods"] == ["password"]
    exp = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    iss = dt.datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    assert abs((exp - iss).total_seconds() - 86400) < 120
    # use it
    h = {"X-Auth-Token": tok}
    r = raw_a.anon("GET", "/v1/{p}/channels", headers=h)
    assert r.status == 200, r
    name = uniq("tok")
    r = raw_a.anon("POST", "/v1/{p}/channels", body={"name": name}, headers=h)
    assert r.status == 200, r
    assert channel_exists(eg_a, name)
    assert raw_a.anon("DELETE", "/v1/{p}/channels/" + r.json()["id"], headers=h).status == 204


def test_token_variants_domain_id_and_no_scope(raw_a, server):
    c = server.a
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": c.ak, "password": c.sk, "domain": {"id": c.domain}}}}}}
    r = raw_a.anon("POST", "/v3/auth/tokens", body=body)
    assert r.status == 201, r
    assert r.json()["token"]["project"]["id"] == c.project
    assert raw_a.anon("GET", "/v1/{p}/channels",
                      headers={"X-Auth-Token": r.header("X-Subject-Token")}).status == 200


def test_token_on_other_project_is_403(raw_a, server, pb):
    _, tok = get_token(raw_a, server.a)
    r = raw_a.anon("GET", f"/v1/{pb}/channels", headers={"X-Auth-Token": tok})
    assert_eg_error(r, 403, "EG.00512000")


def test_token_wrong_password_401(raw_a, server):
    c = server.a
    body = token_body(c)
    body["auth"]["identity"]["password"]["user"]["password"] = c.sk + "x"
    r = raw_a.anon("POST", "/v3/auth/tokens", body=body)
    assert_eg_error(r, 401, "APIGW.0301")
    assert not r.header("X-Subject-Token")


def test_token_scope_foreign_project_401(raw_a, server):
    r = raw_a.anon("POST", "/v3/auth/tokens", body=token_body(server.a, project=server.b.project))
    assert_eg_error(r, 401, "APIGW.0301")


def test_unknown_token_401(raw_a):
    r = raw_a.anon("GET", "/v1/{p}/channels", headers={"X-Auth-Token": "bm90LWEtcmVhbC10b2tlbg"})
    assert_eg_error(r, 401, "APIGW.0301")


def test_authorization_takes_precedence_over_token(raw_a, server):
    _, tok = get_token(raw_a, server.a)
    # valid signature + garbage token -> signature wins -> 200
    assert raw_a.call("GET", "/v1/{p}/channels", headers={"X-Auth-Token": "garbage"}).status == 200
    # bad signature + valid token -> signature wins -> 401
    req = raw_a.prepare("GET", "/v1/{p}/channels", headers={"X-Auth-Token": tok})
    case_tampered_signature(raw_a, req)
    assert_eg_error(raw_a.send(req), 401, "APIGW.0301")


def test_without_x_project_id_header(raw_a):
    req = raw_a.prepare("GET", "/v1/{p}/channels", project_header=False).sign(raw_a.ak, raw_a.sk)
    assert "x-project-id" not in req.headers["Authorization"]
    assert raw_a.send(req).status == 200


def test_raw_query_forms_are_canonicalised(raw_a):
    """docs/signing.md: the server canonicalises the raw query: unsorted order, a literal '+'
    (not a space), a key without '='."""
    for raw_q, pairs in [("offset=0&limit=5", [("offset", "0"), ("limit", "5")]),
                         ("fuzzy_name=a+b", [("fuzzy_name", "a+b")]),
                         ("flag&limit=3", [("flag", ""), ("limit", "3")])]:
        req = raw_a.prepare("GET", "/v1/{p}/channels", query=pairs).sign(raw_a.ak, raw_a.sk)
        req.target = (lambda q=raw_q, p=req.path: p + "?" + q)
        r = raw_a.send(req)
        assert r.status == 200, (raw_q, r)
    # and a '+' decoded as a space would not verify:
    req = raw_a.prepare("GET", "/v1/{p}/channels", query=[("fuzzy_name", "a b")])
    req.sign(raw_a.ak, raw_a.sk)
    req.target = (lambda p=req.path: p + "?fuzzy_name=a+b")
    assert_eg_error(raw_a.send(req), 401, "APIGW.0301")


def test_token_wrong_domain_401(raw_a, server):
    body = token_body(server.a)
    body["auth"]["identity"]["password"]["user"]["domain"] = {"name": "not-my-domain"}
    assert_eg_error(raw_a.anon("POST", "/v3/auth/tokens", body=body), 401, "APIGW.0301")


def test_signed_token_request_accepted(raw_a, server):
    """docs/signing.md: POST /v3/auth/tokens needs no signature, but a signed one is accepted."""
    r = raw_a.call("POST", "/v3/auth/tokens", body=token_body(server.a))
    assert r.status == 201, r
    assert r.header("X-Subject-Token")


def test_repeated_signed_header_joined_with_comma(raw_a):
    """docs/signing.md: repeated headers are joined with ',' in arrival order."""
    req = raw_a.prepare("GET", "/v1/{p}/channels", headers={"X-Multi": "first,second"})
    req.sign(raw_a.ak, raw_a.sk)
    # send the signed header as two header lines
    orig_send_headers = dict(req.headers)
    del req.headers["X-Multi"]
    import http.client
    conn = http.client.HTTPConnection(raw_a.host, raw_a.port, timeout=10)
    try:
        conn.putrequest("GET", req.target(), skip_host=True, skip_accept_encoding=True)
        for k, v in req.headers.items():
            conn.putheader(k, v)
        conn.putheader("X-Multi", "first")
        conn.putheader("X-Multi", "second")
        conn.endheaders()
        r = conn.getresponse()
        r.read()
        assert r.status == 200, orig_send_headers
    finally:
        conn.close()
