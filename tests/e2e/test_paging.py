"""Lists and pagination (docs/limits.md): offset/limit/sort/name/fuzzy_name, total vs size."""
import uuid

import pytest
from huaweicloudsdkeg.v1 import ListChannelsRequest

from eglib import assert_eg_error, sdk_err


@pytest.fixture
def sixteen(res_a):
    tag = uuid.uuid4().hex[:8]
    prefix = f"pg{tag}"
    # names chosen so that name order differs from creation order
    names = [f"{prefix}-{(i * 7) % 16:02d}" for i in range(16)]
    ids = {}
    for n in names:
        ids[n] = res_a.channel(name=n).id
    return prefix, names, ids


def lst(eg, **kw):
    return eg.list_channels(ListChannelsRequest(**kw))


def test_total_size_default_limit(eg_a, sixteen):
    prefix, names, _ = sixteen
    r = lst(eg_a, fuzzy_name=prefix)
    assert r.total == 16 and r.size == 15 and len(r.items) == 15       # default limit 15
    r = lst(eg_a, fuzzy_name=prefix, limit=1000)
    assert r.total == 16 and r.size == 16
    r = lst(eg_a, fuzzy_name=prefix, limit=5, offset=14)
    assert r.total == 16 and r.size == 2
    r = lst(eg_a, fuzzy_name=prefix, offset=16)
    assert r.total == 16 and r.size == 0 and r.items == []
    r = lst(eg_a, fuzzy_name=prefix, offset=500)       # no upper bound on offset [dec]
    assert r.total == 16 and r.size == 0


def test_sort_by_name(eg_a, sixteen):
    prefix, names, _ = sixteen
    asc = [c.name for c in lst(eg_a, fuzzy_name=prefix, limit=100, sort="name:ASC").items]
    assert asc == sorted(names)
    desc = [c.name for c in lst(eg_a, fuzzy_name=prefix, limit=100, sort="name:desc").items]
    assert desc == sorted(names, reverse=True)
    page = [c.name for c in lst(eg_a, fuzzy_name=prefix, limit=3, offset=3, sort="name:ASC").items]
    assert page == sorted(names)[3:6]


def test_pages_are_stable_and_disjoint(eg_a, sixteen):
    prefix, names, _ = sixteen
    for sort in ("created_time:DESC", "created_time:ASC", "updated_time:asc", None):
        seen = []
        for off in range(0, 16, 3):
            r = lst(eg_a, fuzzy_name=prefix, limit=3, offset=off, sort=sort)
            seen += [c.name for c in r.items]
        assert sorted(seen) == sorted(names), sort
    full = [c.created_time for c in lst(eg_a, fuzzy_name=prefix, limit=100).items]
    assert full == sorted(full, reverse=True)            # default created_time:DESC
    full = [c.created_time for c in lst(eg_a, fuzzy_name=prefix, limit=100,
                                        sort="created_time:ASC").items]
    assert full == sorted(full)


def test_name_exact_and_fuzzy(eg_a, sixteen):
    prefix, names, ids = sixteen
    r = lst(eg_a, name=names[3])
    assert r.total == 1 and r.items[0].id == ids[names[3]]
    assert lst(eg_a, name=prefix).total == 0               # exact, not prefix
    assert lst(eg_a, fuzzy_name=prefix.upper()).total == 16  # case-insensitive substring
    assert lst(eg_a, fuzzy_name=prefix[2:] + "-0").total == 10   # -00..-09
    assert lst(eg_a, fuzzy_name="zz-no-such-zz").total == 0


@pytest.mark.parametrize("kw", [dict(limit=0), dict(limit=1001), dict(limit=-1), dict(offset=-1),
                                dict(sort="name"), dict(sort="id:ASC"), dict(sort="name:UP"),
                                dict(sort="name:ASC:x"), dict(provider_type="SYSTEM")])
def test_bad_list_params_400(eg_a, kw):
    assert_eg_error(sdk_err(lst, eg_a, **kw), 400, "EG.00513000")


def test_limit_bounds_accepted(eg_a):
    assert lst(eg_a, limit=1).size <= 1
    assert lst(eg_a, limit=1000).status_code == 200


@pytest.mark.parametrize("q", [{"limit": "abc"}, {"offset": "1.5"}, {"limit": "1e3"},
                               {"limit": "10abc"}])
def test_non_integer_params_400(raw_a, q):
    assert_eg_error(raw_a.call("GET", "/v1/{p}/channels", query=q), 400, "EG.00513000")


@pytest.mark.parametrize("what", ["channels", "sources", "connections", "subscriptions",
                                  "target-catalogs", "subscription-triggers/urn%3Ax"])
def test_every_list_validates_limit(raw_a, what):
    for q in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"sort": "bogus:ASC"}):
        assert_eg_error(raw_a.call("GET", f"/v1/{{p}}/{what}", query=q), 400, "EG.00513000")
    r = raw_a.call("GET", f"/v1/{{p}}/{what}", query={"limit": 1})
    assert r.status == 200, r
    b = r.json()
    assert set(b) >= {"total", "size", "items"} and b["size"] == len(b["items"]) <= 1


def test_other_lists_fuzzy_and_paging(raw_a, res_a, eg_a):
    from sdkx import custom_source, webhook_target
    ch = res_a.channel()
    tag = uuid.uuid4().hex[:8]
    srcs = [res_a.source(ch.id, name=f"pgs{tag}-{i}") for i in range(3)]
    for i in range(3):
        res_a.connection(name=f"pgc{tag}-{i}")
        res_a.subscription(ch.id, [custom_source(srcs[0].name)], [webhook_target()],
                           name=f"pgu{tag}-{i}")
    for what, pre in [("sources", "pgs"), ("connections", "pgc"), ("subscriptions", "pgu")]:
        r = raw_a.call("GET", f"/v1/{{p}}/{what}", query={"fuzzy_name": (pre + tag).upper(),
                                                          "limit": 2, "sort": "name:DESC"})
        assert r.status == 200, r
        b = r.json()
        assert b["total"] == 3 and b["size"] == 2
        assert [i["name"] for i in b["items"]] == [f"{pre}{tag}-2", f"{pre}{tag}-1"]
        r = raw_a.call("GET", f"/v1/{{p}}/{what}", query={"name": f"{pre}{tag}-1"})
        assert r.json()["total"] == 1
