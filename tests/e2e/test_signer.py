"""Unit tests of the suite's own signer against worked examples computed with the official SDK's
signer (the algorithm is described in docs/signing.md).

No server needed. If these fail, every auth expectation in the suite is suspect."""
import hashlib
import json

import pytest

from eglib import Req, canonical_request, canonical_uri, string_to_sign, signature

AK, SK = "AKTESTEXAMPLE00000001", "SKtestExampleSecretKey0000000000000000001"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20240102T030405Z"
SIGNED = ["content-type", "host", "user-agent", "x-project-id", "x-sdk-date"]


def headers():
    return {"User-Agent": "huaweicloud-usdk-python/3.0", "Content-Type": "application/json",
            "X-Sdk-Date": DATE, "X-Project-Id": PROJECT, "Host": "127.0.0.1:8080"}


BODY_A = json.dumps({"events": [{"id": "evt-0001", "source": "orders-app", "specversion": "1.0",
                                 "type": "order.created", "datacontenttype": "application/json",
                                 "time": "2024-01-02T03:04:05Z",
                                 "data": {"orderId": 42, "amount": 9.5}}]}).encode()


def test_example_a_put_events():
    path = f"/v1/{PROJECT}/channels/7c0b3d9e-1f2a-4b5c-8d6e-0a1b2c3d4e5f/events"
    assert len(BODY_A) == 214
    assert hashlib.sha256(BODY_A).hexdigest() == \
        "5793aea5341a7a694aa34a8e8c8b48d79579710f9f128279bd97b8b4cdaeb652"
    creq = canonical_request("POST", path, [], headers(), SIGNED, BODY_A)
    assert creq == (
        "POST\n"
        f"/v1/{PROJECT}/channels/7c0b3d9e-1f2a-4b5c-8d6e-0a1b2c3d4e5f/events/\n"
        "\n"
        "content-type:application/json\n"
        "host:127.0.0.1:8080\n"
        "user-agent:huaweicloud-usdk-python/3.0\n"
        f"x-project-id:{PROJECT}\n"
        f"x-sdk-date:{DATE}\n"
        "\n"
        "content-type;host;user-agent;x-project-id;x-sdk-date\n"
        "5793aea5341a7a694aa34a8e8c8b48d79579710f9f128279bd97b8b4cdaeb652")
    sts = string_to_sign(creq, DATE)
    assert sts.split("\n")[2] == "3eef5fa3aa556431c48555552c5fcca1c660b9e9dddd2b1e8f444f54b9a29ebc"
    req = Req("POST", path, [], headers(), BODY_A).sign(AK, SK)
    assert req.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE00000001, "
        "SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, "
        "Signature=e99675fe728d1bbd0c88b2de375d1355a6e8c5addbf6ea73f8eadb84e2a6d086")


def test_example_b_list_subscriptions_query():
    q = [("limit", "10"), ("offset", "0"), ("fuzzy_name", "ord er"), ("sort", "created_time:DESC")]
    req = Req("GET", f"/v1/{PROJECT}/subscriptions", q, headers(), b"")
    assert req.target() == (f"/v1/{PROJECT}/subscriptions?fuzzy_name=ord%20er&limit=10&offset=0"
                            "&sort=created_time%3ADESC")
    creq = canonical_request("GET", req.path, q, headers(), SIGNED, b"")
    assert creq.split("\n")[2] == "fuzzy_name=ord%20er&limit=10&offset=0&sort=created_time%3ADESC"
    assert creq.endswith("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    sts = string_to_sign(creq, DATE)
    assert sts == ("SDK-HMAC-SHA256\n20240102T030405Z\n"
                   "6bc930f853aa17c6183609250004cb304b4c998ab81f3bd5a9559b6b58fba7f3")
    assert signature(SK, sts) == "6ef5ce5c4d609737820a39de4b12668fcd477b3104ba3ad2c7738f266052db1e"


def test_example_c_encoded_path_parameter():
    path = (f"/v1/{PROJECT}/subscription-triggers/"
            "urn%3Afss%3Acn-north-4%3Aabc%3Afunction%3Adefault%3Af1%3Alatest")
    assert canonical_uri(path) == path + "/"
    creq = canonical_request("GET", path, [], headers(), SIGNED, b"")
    sts = string_to_sign(creq, DATE)
    assert sts == ("SDK-HMAC-SHA256\n20240102T030405Z\n"
                   "1a6d9ab2d730cc3d8f2e628262fb2110ed60eebf4075834cf8971304bc91f21d")
    assert signature(SK, sts) == "af94e5d67c47b3fd42b4333a0da0bba52fcf307b46875e38d89c1c76e2543b2b"


@pytest.mark.parametrize("raw,canon", [
    ("/", "/"),
    ("/v1/p/channels", "/v1/p/channels/"),
    ("/v1/p/channels/", "/v1/p/channels/"),
    ("/v1/p/x%2Fy", "/v1/p/x/y/"),
    ("/v1/p/a%20b", "/v1/p/a%20b/"),
])
def test_canonical_uri_rules(raw, canon):
    assert canonical_uri(raw) == canon


def test_matches_official_sdk_signer():
    """Cross-check against huaweicloudsdkcore's own signer (when installed)."""
    sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")
    creds = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
    q = [("limit", 10), ("offset", 0), ("fuzzy_name", "ord er"), ("sort", "created_time:DESC")]
    sreq = sdk_request.SdkRequest(
        method="GET", schema="http", host="127.0.0.1:8080",
        resource_path=f"/v1/{PROJECT}/subscriptions", query_params=q, body=None,
        header_params={"User-Agent": "huaweicloud-usdk-python/3.0",
                       "Content-Type": "application/json", "X-Sdk-Date": DATE})
    sreq = creds.BasicCredentials(AK, SK, PROJECT).sign_request(sreq)
    mine = Req("GET", f"/v1/{PROJECT}/subscriptions", [(k, str(v)) for k, v in q],
               headers(), b"").sign(AK, SK)
    assert mine.headers["Authorization"] == sreq.header_params["Authorization"]
