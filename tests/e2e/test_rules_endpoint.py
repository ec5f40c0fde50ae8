"""POST /openeg/v1/rules/test: an OpenEG extension, signed like every request."""

from eglib import assert_eg_error

FILTER = {
    "source": [{"op": "StringIn", "values": ["orders-app"]}],
    "data": {"amount": [{"op": "NumberGreaterThan", "value": 100}]},
}


def ev(amount, source="orders-app"):
    return {"id": "e", "source": source, "specversion": "1.0", "type": "t", "data": {"amount": amount}}


def test_reports_match_and_reason(raw_a):
    r = raw_a.call("POST", "/openeg/v1/rules/test", body={"filter": FILTER, "events": [ev(150), ev(50), ev(150, "x")]})
    assert r.status == 200, r
    results = r.json()["results"]
    assert [x["matched"] for x in results] == [True, False, False]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert results[0]["reason"] == "matched"
    assert "amount" in results[1]["reason"]
    assert "source" in results[2]["reason"]


def test_invalid_filter_is_eg_00513004(raw_a):
    r = raw_a.call("POST", "/openeg/v1/rules/test", body={"filter": {"type": []}, "events": [ev(1)]})
    assert_eg_error(r, 400, "EG.00513004")


def test_bad_bodies(raw_a):
    assert_eg_error(raw_a.call("POST", "/openeg/v1/rules/test", body={"filter": FILTER}), 400, "EG.00513000")
    assert_eg_error(raw_a.call("POST", "/openeg/v1/rules/test", body={"filter": FILTER, "events": []}), 400, "EG.00513000")


def test_needs_a_credential(raw_a):
    r = raw_a.anon("POST", "/openeg/v1/rules/test", body={"filter": FILTER, "events": [ev(1)]})
    assert_eg_error(r, 401, "APIGW.0301")
