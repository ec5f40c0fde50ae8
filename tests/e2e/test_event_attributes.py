"""CloudEvent attribute bounds (issue #11): `id`, `source`, `type` and `subject` are 1–256
characters (characters, not bytes) without control characters (Unicode Cc). A violation fails
only its event, with EG.00513000 in the 200 report, checked before the source lookup; events
at the bounds are accepted and stored. Through the official SDK."""
from __future__ import annotations

import pytest
from huaweicloudsdkeg.v1 import (
    CloudEvents, PutEventsReq, PutEventsRequest, ShowDetailOfEventRequest,
)

from dataplane import wait_until
from eglib import body_of, uniq


@pytest.fixture
def world(res_a):
    ch, src = res_a.app_setup()
    return ch, src


def ev(src, **over):
    e = {"id": uniq("ev"), "source": src, "specversion": "1.0", "type": "e2e.bounds",
         "datacontenttype": "application/json", "data": {"n": 1}}
    e.update(over)
    return e


def shown(eg, event_id):
    """The stored event, once its trace is written (behind the publish, within about 1 s)."""
    return wait_until(lambda: body_of(eg.show_detail_of_event(
        ShowDetailOfEventRequest(trace_id=event_id))), 10, f"event {event_id} stored")


def put(eg, channel_id, events):
    r = eg.put_events(PutEventsRequest(channel_id=channel_id, body=PutEventsReq(
        events=[CloudEvents(**e) for e in events])))
    return body_of(r)


def test_attributes_at_the_bounds_are_accepted(eg_a, world):
    ch, src = world
    # 256 characters of 1, 2, 3 and 4 bytes each.
    evs = [
        ev(src.name, id=uniq("a") + "x" * (256 - 14)),
        ev(src.name, id=uniq("b") + "\u00e9" * (256 - 14), subject="\u4e2d" * 256),
        ev(src.name, type="\U0001F600" * 256, subject="s"),
        ev(src.name, type="t" * 256, subject="orders/\u00a0no-break/\u200bzero-width"),
    ]
    for e in evs:
        assert len(e["id"]) <= 256
    b = put(eg_a, ch.id, evs)
    assert b["failed_count"] == 0, b
    assert [x["event_id"] for x in b["events"]] == [e["id"] for e in evs]
    for e in evs:
        stored = shown(eg_a, e["id"])
        for k in ("id", "type", "subject"):
            assert stored.get(k) == e.get(k), (k, stored)


@pytest.mark.parametrize("attr", ["id", "source", "type", "subject"])
def test_out_of_bounds_attributes_fail_only_their_event(eg_a, world, attr):
    ch, src = world
    bad_values = {
        "257 chars": "y" * 257,
        "257 two-byte chars": "\u00e9" * 257,
        "NUL": "a\u0000b",
        "newline": "a\nb",
        "tab": "a\tb",
        "DEL": "a\u007fb",
        "C1 NEL": "a\u0085b",
    }
    if attr == "subject":
        bad_values["empty"] = ""
    good = ev(src.name)
    bad = []
    for what, v in bad_values.items():
        e = ev(src.name, **{attr: v})
        if attr != "id":
            e["id"] = uniq(what.replace(" ", "-"))
        bad.append(e)
    evs = [good] + bad
    b = put(eg_a, ch.id, evs)
    assert b["failed_count"] == len(bad), b
    out = b["events"]
    assert "error_code" not in out[0], out[0]
    for (what, _), x in zip(bad_values.items(), out[1:]):
        # Checked before the source lookup: a bad source is a parameter error, not 515001.
        assert x["error_code"] == "EG.00513000", (attr, what, x)
        assert attr in x["error_msg"], (attr, what, x)
    assert shown(eg_a, good["id"])["id"] == good["id"]
