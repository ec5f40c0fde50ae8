"""SDK-side helpers: model builders for every target kind and a per-test resource tracker that
cleans up what a test created (subscriptions, then sources, connections, channels)."""
from __future__ import annotations

from huaweicloudsdkcore.exceptions import exceptions as exc
from huaweicloudsdkeg.v1 import (
    ApigwTargetDetail, ChannelCreateReq, ConnectionCreateReq, CreateChannelRequest,
    CreateConnectionRequest, CreateEventSourceRequest, CreateSubscriptionRequest,
    CustomizeSourceCreateReq, DeleteChannelRequest, DeleteConnectionRequest,
    DeleteEventSourceRequest, DeleteSubscriptionRequest, EgTargetDetail, HeaderParameter,
    InvocationHttpParameters, KafkaConnectionDetail, KafkaTargetDetail,
    KafkaTargetDetailKeyTransform, ListChannelsRequest, SmnTargetDetail,
    SmnTargetDetailSubjectTransform, SubscriptionCreateReq, SubscriptionSource,
    SubscriptionTarget, TransForm,
)

from eglib import uniq

ORIGINAL = TransForm(type="ORIGINAL", value="")


def src_filter(name: str, **extra) -> dict:
    f = {"source": [{"op": "StringIn", "values": [name]}]}
    f.update(extra)
    return f


def custom_source(name: str, filter: dict | None = None, id: str | None = None):
    return SubscriptionSource(id=id, name=name, provider_type="CUSTOM",
                              filter=filter if filter is not None else src_filter(name))


def webhook_target(url="http://127.0.0.1:9/hook", transform=ORIGINAL, **kw):
    return SubscriptionTarget(name="WEBHOOK", provider_type="CUSTOM", detail={"url": url},
                              transform=transform, **kw)


def fg_target(urn, invoke_type="SYNC", **kw):
    return SubscriptionTarget(name="HC.FunctionGraph", provider_type="OFFICIAL",
                              detail={"urn": urn, "invoke_type": invoke_type,
                                      "agency_name": "EG_AGENCY"},
                              transform=kw.pop("transform", ORIGINAL), **kw)


def workflow_target(workflow_id, **kw):
    return SubscriptionTarget(name="HC.FunctionFlow", provider_type="OFFICIAL",
                              detail={"workflow_id": workflow_id, "agency_name": "EG_AGENCY"},
                              transform=kw.pop("transform", ORIGINAL), **kw)


def smn_target(project, **kw):
    return SubscriptionTarget(
        name="HC.SMN", provider_type="OFFICIAL",
        smn_detail=SmnTargetDetail(
            urn=f"urn:smn:cn-north-4:{project}:topic1", agency_name="EG_AGENCY",
            subject_transform=SmnTargetDetailSubjectTransform(type="CONSTANT", value="hello")),
        transform=kw.pop("transform", ORIGINAL), **kw)


def eg_target(project, channel_id, **kw):
    return SubscriptionTarget(
        name="HC.EG", provider_type="OFFICIAL",
        eg_detail=EgTargetDetail(target_project_id=project, target_channel_id=channel_id,
                                 target_region="cn-north-4", cross_region=False,
                                 cross_account=False, agency_name="EG_AGENCY"),
        transform=kw.pop("transform", ORIGINAL), **kw)


def kafka_target(connection_id, topic="orders", **kw):
    return SubscriptionTarget(
        name="HC.Kafka", provider_type="OFFICIAL", connection_id=connection_id,
        kafka_detail=KafkaTargetDetail(
            topic=topic, key_transform=KafkaTargetDetailKeyTransform(type="CONSTANT", value="k1")),
        transform=kw.pop("transform", ORIGINAL), **kw)


def apigw_target(url="https://api.example.com/orders", secret="s3cr3t-value", **kw):
    return SubscriptionTarget(
        name="HC.APIGW", provider_type="OFFICIAL",
        apigw_detail=ApigwTargetDetail(
            url=url,
            invocation_http_parameters=InvocationHttpParameters(header_parameters=[
                HeaderParameter(is_value_secret=False, key="X-Plain", value="plain-value"),
                HeaderParameter(is_value_secret=True, key="X-Secret", value=secret)])),
        transform=kw.pop("transform", ORIGINAL), **kw)


def fn_urn(project, fn="f1"):
    return f"urn:fss:cn-north-4:{project}:function:default:{fn}:latest"


class Resources:
    """Creates resources through the SDK and deletes them at teardown (best effort)."""

    def __init__(self, eg, raw=None):
        self.eg, self.raw = eg, raw
        self.subs, self.sources, self.conns, self.channels = [], [], [], []

    def channel(self, name=None, description=None, **kw):
        r = self.eg.create_channel(CreateChannelRequest(body=ChannelCreateReq(
            name=name or uniq("ch"), description=description, **kw)))
        self.channels.append(r.id)
        return r

    def source(self, channel_id, name=None, type=None, detail=None, description=None):
        r = self.eg.create_event_source(CreateEventSourceRequest(body=CustomizeSourceCreateReq(
            name=name or uniq("src"), channel_id=channel_id, type=type, detail=detail,
            description=description)))
        self.sources.append(r.id)
        return r

    def connection(self, name=None, type=None, kafka_detail=None, description=None):
        r = self.eg.create_connection(CreateConnectionRequest(body=ConnectionCreateReq(
            name=name or uniq("conn"), description=description, vpc_id="vpc-e2e",
            subnet_id="subnet-e2e", type=type, kafka_detail=kafka_detail)))
        self.conns.append(r.id)
        return r

    def kafka_connection(self, name=None):
        return self.connection(name=name, type="KAFKA", kafka_detail=KafkaConnectionDetail(
            instance_id="kafka-inst-e2e", addr="127.0.0.1:9", security_protocol="SASL_SSL",
            enable_sasl_ssl=True, user_name="kuser", password="kafka-pass-e2e", acks="1"))

    def subscription(self, channel_id, sources, targets, name=None, description=None):
        r = self.eg.create_subscription(CreateSubscriptionRequest(body=SubscriptionCreateReq(
            name=name or uniq("sub"), description=description, channel_id=channel_id,
            sources=sources, targets=targets)))
        self.subs.append(r.id)
        return r

    def app_setup(self):
        """A custom channel with one APPLICATION source; returns (channel, source)."""
        ch = self.channel()
        src = self.source(ch.id)
        return ch, src

    def track(self, kind, rid):
        getattr(self, kind).append(rid)

    def cleanup(self):
        steps = [(self.subs, lambda i: self.eg.delete_subscription(
                     DeleteSubscriptionRequest(subscription_id=i))),
                 (self.sources, lambda i: self.eg.delete_event_source(
                     DeleteEventSourceRequest(source_id=i))),
                 (self.conns, lambda i: self.eg.delete_connection(
                     DeleteConnectionRequest(connection_id=i))),
                 (self.channels, lambda i: self.eg.delete_channel(
                     DeleteChannelRequest(channel_id=i)))]
        for ids, fn in steps:
            for i in reversed(ids):
                try:
                    fn(i)
                except (exc.SdkException, Exception):  # noqa: BLE001 - best effort
                    pass


def list_names(eg, **kw):
    r = eg.list_channels(ListChannelsRequest(limit=1000, **kw))
    return [c.name for c in r.items]
