"""Channels (ops 12–16), default channel (created with the project)."""
import pytest
from huaweicloudsdkeg.v1 import (
    ChannelCreateReq, ChannelUpdateReq, CreateChannelRequest, DeleteChannelRequest,
    ListChannelsRequest, ListQuotasRequest, ShowDetailOfChannelRequest, UpdateChannelRequest,
)

from eglib import TIME_RE, UUID_RE, assert_eg_error, assert_request_id, sdk_err, uniq


def default_channel(eg):
    r = eg.list_channels(ListChannelsRequest(name="default"))
    items = [c for c in r.items if c.name == "default"]
    assert len(items) == 1, r
    return items[0]


def test_default_channel_exists(eg_a):
    d = default_channel(eg_a)
    assert d.provider_type == "OFFICIAL"
    assert d.description == "default channel"
    assert UUID_RE.match(d.id)
    # stable id
    assert default_channel(eg_a).id == d.id
    r = eg_a.list_channels(ListChannelsRequest(provider_type="OFFICIAL"))
    assert [c.name for c in r.items] == ["default"]


def test_default_channels_differ_per_project(eg_a, eg_b):
    assert default_channel(eg_a).id != default_channel(eg_b).id


def test_channel_crud(eg_a, res_a):
    name = uniq("ch")
    c = res_a.channel(name=name, description="first", enterprise_project_id="0")
    assert c.status_code == 200
    assert_request_id(c.x_request_id)
    assert UUID_RE.match(c.id)
    assert c.name == name and c.description == "first" and c.provider_type == "CUSTOM"
    assert TIME_RE.match(c.created_time) and TIME_RE.match(c.updated_time)
    assert c.enterprise_project_id == "0"

    s = eg_a.show_detail_of_channel(ShowDetailOfChannelRequest(channel_id=c.id))
    assert (s.id, s.name, s.description, s.provider_type) == (c.id, name, "first", "CUSTOM")
    assert s.created_time == c.created_time

    u = eg_a.update_channel(UpdateChannelRequest(channel_id=c.id, body=ChannelUpdateReq(
        description="second")))
    assert u.id == c.id and u.name == name and u.description == "second"
    assert u.created_time == c.created_time
    assert u.updated_time >= c.updated_time
    s = eg_a.show_detail_of_channel(ShowDetailOfChannelRequest(channel_id=c.id))
    assert s.description == "second"

    lst = eg_a.list_channels(ListChannelsRequest(name=name))
    assert lst.total == 1 and lst.size == 1 and lst.items[0].id == c.id

    d = eg_a.delete_channel(DeleteChannelRequest(channel_id=c.id))
    assert d.status_code == 204
    e = sdk_err(eg_a.show_detail_of_channel, ShowDetailOfChannelRequest(channel_id=c.id))
    assert_eg_error(e, 404, "EG.00514001")
    assert eg_a.list_channels(ListChannelsRequest(name=name)).total == 0
    e = sdk_err(eg_a.delete_channel, DeleteChannelRequest(channel_id=c.id))
    assert_eg_error(e, 404, "EG.00514001")


def test_channel_with_policy_and_cross_account(eg_a, res_a, pa):
    name = uniq("ch-pol")
    policy = {"stmt1": {"Sid": "allow_account_to_put_events", "Effect": "Allow",
                        "Principal": {"p1": {"IAM": ["0123456789abcdef0123456789abcdef"]}},
                        "Action": "eg:channels:putEvents",
                        "Resource": f"urn:eg:cn-north-4:{pa}:channel:{name}"}}
    c = res_a.channel(name=name, cross_account=True, policy=policy)
    assert c.name == name
    u = eg_a.update_channel(UpdateChannelRequest(channel_id=c.id, body=ChannelUpdateReq(
        cross_account=False, policy={})))
    assert u.id == c.id


def test_channel_update_absent_description_keeps_it(eg_a, res_a):
    c = res_a.channel(description="keep me")
    u = eg_a.update_channel(UpdateChannelRequest(channel_id=c.id, body=ChannelUpdateReq(
        enterprise_project_id="0")))
    assert u.description == "keep me"


def test_duplicate_name(eg_a, res_a):
    c = res_a.channel()
    e = sdk_err(eg_a.create_channel, CreateChannelRequest(body=ChannelCreateReq(name=c.name)))
    assert_eg_error(e, 400, "EG.00513001")
    assert eg_a.list_channels(ListChannelsRequest(name=c.name)).total == 1


@pytest.mark.parametrize("name", ["default"])
def test_reserved_name_default(eg_a, name):
    e = sdk_err(eg_a.create_channel, CreateChannelRequest(body=ChannelCreateReq(name=name)))
    assert_eg_error(e, 400, "EG.00513000")
    assert eg_a.list_channels(ListChannelsRequest(name="default")).total == 1


def test_name_default_is_case_sensitive(eg_a, res_a):
    c = res_a.channel(name="Default")
    assert c.name == "Default"


def test_default_channel_cannot_be_updated_or_deleted(eg_a):
    d = default_channel(eg_a)
    e = sdk_err(eg_a.update_channel, UpdateChannelRequest(channel_id=d.id, body=ChannelUpdateReq(
        description="hacked")))
    assert_eg_error(e, 403, "EG.00514004")
    e = sdk_err(eg_a.delete_channel, DeleteChannelRequest(channel_id=d.id))
    assert_eg_error(e, 403, "EG.00514004")
    d2 = default_channel(eg_a)
    assert d2.description == "default channel" and d2.id == d.id


def test_unknown_channel_404(eg_a):
    bogus = "00000000-0000-4000-8000-000000000000"
    for fn, req in [
        (eg_a.show_detail_of_channel, ShowDetailOfChannelRequest(channel_id=bogus)),
        (eg_a.update_channel, UpdateChannelRequest(channel_id=bogus,
                                                   body=ChannelUpdateReq(description="x"))),
        (eg_a.delete_channel, DeleteChannelRequest(channel_id=bogus)),
    ]:
        assert_eg_error(sdk_err(fn, req), 404, "EG.00514001")


def test_channel_quota(eg_a, res_a):
    q = eg_a.list_quotas(ListQuotasRequest(type="CHANNEL")).quotas.resources
    assert len(q) == 1 and q[0].type == "CHANNEL"
    assert q[0].quota == 50
    for _ in range(q[0].quota - q[0].used):
        res_a.channel()
    q2 = eg_a.list_quotas(ListQuotasRequest(type="CHANNEL")).quotas.resources[0]
    assert q2.used == q2.quota
    name = uniq("ch-over")
    e = sdk_err(eg_a.create_channel, CreateChannelRequest(body=ChannelCreateReq(name=name)))
    assert_eg_error(e, 403, "EG.00514003")
    assert eg_a.list_channels(ListChannelsRequest(name=name)).total == 0
    # deleting frees quota immediately
    eg_a.delete_channel(DeleteChannelRequest(channel_id=res_a.channels.pop()))
    res_a.channel(name=name)


def test_enterprise_project_id_filter(eg_a, res_a):
    c = res_a.channel(enterprise_project_id="eps-e2e-1")
    r = eg_a.list_channels(ListChannelsRequest(enterprise_project_id="eps-e2e-1", limit=1000))
    assert [x.id for x in r.items] == [c.id]
    r = eg_a.list_channels(ListChannelsRequest(enterprise_project_id="eps-e2e-2", limit=1000))
    assert c.id not in [x.id for x in r.items]
