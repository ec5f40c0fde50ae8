"""Broker connectors against real brokers, through the SDK (issue #13).

* HC.Kafka targets: 10,000 events reach the topic (set equality, transform, key).
* Dead-letter queues: a target that gives up lands every event in the Kafka dead-letter topic
  with the `eg-*` headers; with the dead-letter broker down for 30 s nothing is dropped.
* The target's Kafka broker SIGKILLed for 30 s during delivery, then restarted: nothing lost.
* HC.RocketMQ targets: 2,000 events reach the topic (set equality, transform, keys); ROCKETMQ
  sources: 2,000 messages reach a webhook while OpenEG is SIGKILLed twice.
* RABBITMQ sources: 10,000 queued messages reach a webhook subscribed to the source's channel
  while OpenEG is SIGKILLed twice; a wrong password shows ERROR with the reason within 5 s and
  RUNNING once fixed.

Needs `OPENEG_TEST_KAFKA_BROKERS` (the shared Kafka-API broker, `scripts/brokers.sh`) and the
tansu binary (`OPENEG_TANSU_BIN`, else `$OPENEG_BROKERS_DIR/bin/tansu`, else
`~/.cache/openeg-brokers/bin/tansu`) for the private brokers the kill tests start and kill;
`OPENEG_TEST_RABBITMQ_URL` for RabbitMQ; `OPENEG_TEST_ROCKETMQ_NAMESRV` for RocketMQ (whose
test client is `openeg-bench rocketmq`, next to `OPENEG_BIN`: Python has no client that talks
to the rocketmq-rust broker). Each group is skipped without its variable unless
`OPENEG_REQUIRE_KAFKA=1` / `OPENEG_REQUIRE_RABBITMQ=1`, which make a missing broker a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from huaweicloudsdkeg.v1 import (
    CustomizeSourceUpdateReq, DeadLetterQueue, KafkaConnectionDetail, KafkaTargetDetail,
    KafkaTargetDetailKeyTransform, RocketMqDetail, ShowDetailOfConnectionRequest,
    ShowDetailOfEventSourceRequest, SubscriptionTarget, TransForm, UpdateEventSourceRequest,
)

from dataplane import DataServer, event, put_raw, wait_until
from eglib import uniq
from receivers import Receiver
from sdkx import ORIGINAL, Resources, custom_source, webhook_target

HERE = Path(__file__).resolve().parent

# The brokers' behaviour does not depend on the metadata store (the engine and store suites
# cover dead letters and deliveries on PostgreSQL): these long tests run on the SQLite pass;
# OPENEG_BROKERS_ALWAYS=1 runs them on the PostgreSQL pass too.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPENEG_E2E_DATABASE_URL"))
    and os.environ.get("OPENEG_BROKERS_ALWAYS") != "1",
    reason="broker tests run on the SQLite pass (OPENEG_BROKERS_ALWAYS=1: here too)")


# --------------------------------------------------------------------------- brokers

def _need(var: str, require: str) -> str:
    v = os.environ.get(var, "").strip()
    if not v:
        if os.environ.get(require) == "1":
            pytest.fail(f"{require}=1 but {var} is not set")
        pytest.skip(f"{var} not set")
    return v


def kafka_brokers() -> str:
    return _need("OPENEG_TEST_KAFKA_BROKERS", "OPENEG_REQUIRE_KAFKA")


def rabbit_url() -> str:
    return _need("OPENEG_TEST_RABBITMQ_URL", "OPENEG_REQUIRE_RABBITMQ")


def tansu_bin() -> str:
    kafka_brokers()
    cands = [os.environ.get("OPENEG_TANSU_BIN", "")]
    base = os.environ.get("OPENEG_BROKERS_DIR") or str(Path.home() / ".cache/openeg-brokers")
    cands.append(str(Path(base) / "bin/tansu"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    if os.environ.get("OPENEG_REQUIRE_KAFKA") == "1":
        pytest.fail("OPENEG_REQUIRE_KAFKA=1 but no tansu binary (run scripts/brokers.sh build)")
    pytest.skip("no tansu binary")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tansu:
    """A private Kafka-API broker (durable SQLite storage) that a test may SIGKILL and restart:
    same port, same data. `advertised_port`: the port clients are told to use (a TLS front)."""

    def __init__(self, advertised_port: int | None = None):
        self.bin = tansu_bin()
        self.port = _free_port()
        self.advertised_port = advertised_port or self.port
        self.dir = Path(tempfile.mkdtemp(prefix="openeg-tansu-"))
        self.proc = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._run()
        if not self._indexed():
            wait_until(lambda: self._has_header_table(), 20, "tansu to create its tables")
            # tansu 0.6 reads each fetched record's headers with a query that scans every
            # header in the store; index them once, with tansu stopped (scripts/brokers.sh
            # does the same for the shared broker).
            self.kill9()
            import sqlite3
            db = sqlite3.connect(str(self.dir / "tansu.db"), timeout=30)
            db.execute("create index if not exists openeg_header_record on header "
                       "(topition, offset_id)")
            db.commit()
            db.close()
            self._run()

    def _schema_has(self, kind: str, name: str) -> bool:
        import sqlite3
        try:
            db = sqlite3.connect(f"file:{self.dir / 'tansu.db'}?mode=ro", uri=True, timeout=30)
        except sqlite3.OperationalError:
            return False
        try:
            return db.execute("select 1 from sqlite_master where type = ? and name = ?",
                              (kind, name)).fetchone() is not None
        except sqlite3.OperationalError:
            return False
        finally:
            db.close()

    def _indexed(self) -> bool:
        return self._schema_has("index", "openeg_header_record")

    def _has_header_table(self) -> bool:
        return self._schema_has("table", "header")

    def _run(self):
        url = f"tcp://{self.addr}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        log = open(self.dir / "tansu.log", "ab")
        # The sqlite path must be relative (tansu drops a leading slash): run in its dir.
        self.proc = subprocess.Popen(
            [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "sqlite://tansu.db"],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def up():
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(up, 20, "tansu to listen")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        self.kill9()


@pytest.fixture
def tansu():
    t = Tansu()
    t.start()
    yield t
    t.stop()


class TlsKafka:
    """A Kafka-API broker reached over TLS only: tansu behind a socat TLS front whose
    certificate is signed by a throwaway CA (`ca`); tansu advertises the front's port."""

    def __init__(self):
        if not shutil.which("socat"):
            if os.environ.get("OPENEG_REQUIRE_KAFKA") == "1":
                pytest.fail("OPENEG_REQUIRE_KAFKA=1 but socat is not installed")
            pytest.skip("socat not installed")
        self.tls_port = _free_port()
        self.broker = Tansu(advertised_port=self.tls_port)
        d = self.broker.dir
        run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=openeg-e2e-ca")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key",
            "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "san.ext")
        (d / "srv.pem").write_bytes((d / "srv.crt").read_bytes() + (d / "srv.key").read_bytes())
        self.ca = str(d / "ca.pem")
        self.front = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def client_conf(self) -> dict:
        return {"security.protocol": "SSL", "ssl.ca.location": self.ca}

    def start(self):
        self.broker.start()
        self.front = subprocess.Popen(
            ["socat", f"OPENSSL-LISTEN:{self.tls_port},bind=127.0.0.1,reuseaddr,fork,"
             f"cert={self.broker.dir / 'srv.pem'},verify=0", f"TCP:{self.broker.addr}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.tls_port)) == 0
        wait_until(up, 10, "the TLS front to listen")

    def stop(self):
        if self.front and self.front.poll() is None:
            self.front.kill()
            self.front.wait(5)
        self.broker.stop()


def create_topic(brokers: str, topic: str, partitions: int = 1, conf: dict | None = None):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": brokers, **(conf or {})})
    for f in a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10).values():
        f.result(30)


def consume(brokers: str, topic: str, want: int, timeout: float, key=lambda m: None,
            conf: dict | None = None, idle: float = 120):
    """Reads `topic` from the beginning until `want` distinct records (by `key(msg)`) arrived,
    or `timeout` passed with nothing new for `idle` seconds (a slow broker on a loaded machine
    is given time while records keep coming), or 3 × `timeout` passed; returns {key: [msg...]}.
    The partitions are assigned explicitly: no consumer-group membership to wait for."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": uniq("e2e"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **(conf or {})})
    got: dict = {}
    start = last_new = time.monotonic()
    try:
        meta = wait_until(lambda: (lambda t: t if t and t.partitions else None)(
            c.list_topics(topic, timeout=10).topics.get(topic)), 60, f"metadata of {topic}")
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        while len(got) < want:
            now = time.monotonic()
            if now - start > 3 * timeout or (now - start > timeout and now - last_new > idle):
                break
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                k = key(m)
                if k not in got:
                    last_new = time.monotonic()
                got.setdefault(k, []).append(m)
    finally:
        c.close()
    return got


def explain_missing(raw, channel_id: str, missing: set, n: int = 3) -> str:
    """What the trace says about a few missing events (for a failure message)."""
    out = []
    for eid in sorted(missing)[:n]:
        try:
            out.append(f"{eid}: {trace_target(raw, channel_id, eid)}")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            out.append(f"{eid}: no trace ({e})")
    return "; ".join(out)


def headers(m) -> dict:
    return {k: (v or b"").decode() for k, v in (m.headers() or [])}


def kafka_connection(res: Resources, addr: str, eg, protocol="PLAINTEXT", want="CREATED"):
    """A KAFKA connection to `addr`, checked by the server: `want` (CREATED)."""
    c = res.connection(type="KAFKA", kafka_detail=KafkaConnectionDetail(
        instance_id="kafka-e2e", addr=addr, security_protocol=protocol,
        enable_sasl_ssl=False, acks="all"))
    g = wait_until(lambda: (lambda g: g if g.status != "CREATING" else None)(
        eg.show_detail_of_connection(ShowDetailOfConnectionRequest(connection_id=c.id))),
        15, "the check")
    assert g.status == want, (g.status, g.error_info)
    return c


def publish(raw, channel_id: str, events: list[dict], threads: int = 4):
    """PutEvents in requests of 20 from `threads` senders; every request must be accepted."""
    chunks = [events[i:i + 20] for i in range(0, len(events), 20)]
    errors = []

    def send(part):
        for ch in part:
            r = put_raw(raw, channel_id, ch)
            if r.status != 200 or r.json().get("failed_count"):
                errors.append(r)
    ts = [threading.Thread(target=send, args=(chunks[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


def trace_target(raw, channel_id: str, event_id: str) -> dict:
    r = raw.call("GET", f"/v1/{{p}}/events/trace/detail/{event_id}",
                 query={"channel_id": channel_id})
    assert r.status == 200, r
    return r.json()["deliverList"][0]["deliverTargetList"][0]


VARIABLE = TransForm(type="VARIABLE", value='{"n":"$.data.n"}', template='{"n":${n}}')


# --------------------------------------------------------------------------- Kafka targets

def test_kafka_target_delivers_10000(eg_a, res_a, raw_a):
    brokers = kafka_brokers()
    topic = uniq("e2e-kafka")
    create_topic(brokers, topic)
    conn = kafka_connection(res_a, brokers, eg_a)
    ch, src = res_a.app_setup()
    target = SubscriptionTarget(
        name="HC.Kafka", provider_type="OFFICIAL", connection_id=conn.id,
        kafka_detail=KafkaTargetDetail(topic=topic, key_transform=KafkaTargetDetailKeyTransform(
            type="VARIABLE", value='{"n":"$.data.n"}', template="key-${n}")),
        transform=VARIABLE, retry_times=16)
    res_a.subscription(ch.id, [custom_source(src.name)], [target])
    n = 10_000
    evs = [event(src.name, id=f"k-{i}", data={"n": i}) for i in range(n)]
    publish(raw_a, ch.id, evs)
    got = consume(brokers, topic, n, 180, key=lambda m: headers(m).get("ce_id"))
    missing = {e["id"] for e in evs} - set(got)
    assert not missing, \
        f"{len(missing)} missing, e.g. {explain_missing(raw_a, ch.id, missing)}"
    assert len(got) == n, f"unexpected records: {sorted(set(got) - {e['id'] for e in evs})[:5]}"
    for eid, ms in got.items():
        i = int(eid[2:])
        for m in ms:
            assert json.loads(m.value()) == {"n": i}
            assert m.key() == f"key-{i}".encode()
            h = headers(m)
            assert (h["ce_source"], h["ce_type"], h["ce_specversion"]) == \
                (src.name, "e2e.test", "1.0")


def test_dead_letters_survive_a_dead_letter_broker_down_30s(eg_a, res_a, raw_a, tansu):
    """A webhook answering 400 (not retried) with a dead-letter queue on a broker that is down
    for 30 s: every event is published there once the broker is back."""
    dlq = uniq("e2e-dlq")
    create_topic(tansu.addr, dlq)
    conn = kafka_connection(res_a, tansu.addr, eg_a)
    rx = Receiver()
    try:
        rx.script("/reject", default=400)
        ch, src = res_a.app_setup()
        target = webhook_target(rx.url("/reject"), transform=VARIABLE, retry_times=3,
                                dead_letter_queue=DeadLetterQueue(
                                    type="KAFKA", instance_id="kafka-e2e",
                                    connection_id=conn.id, topic=dlq))
        sub = res_a.subscription(ch.id, [custom_source(src.name)], [target])
        tansu.kill9()
        down_since = time.monotonic()
        n = 300
        evs = [event(src.name, id=f"d-{i}", data={"n": i}) for i in range(n)]
        publish(raw_a, ch.id, evs)
        rx.wait("/reject", count=n, timeout=30)
        # The first publishes fail after the producer's 25 s message timeout; from then on
        # one probe at a time goes to the broker and the rest fail at once: every record's
        # trace shows a failed publish within about one timeout, whatever its place.
        for eid in ("d-0", "d-150", f"d-{n - 1}"):
            t = wait_until(lambda: (lambda t: t if t.get("deadLetterFailedTimes", 0) >= 1
                                    else None)(trace_target(raw_a, ch.id, eid)),
                           90, f"a failed dead-letter publish of {eid}")
            assert (t["deliverStatus"], t["deadLetterStatus"]) == ("FAILED", "PENDING"), t
        time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
        tansu.start()
        got = consume(tansu.addr, dlq, n, 180, key=lambda m: m.key().decode())
        missing = {e["id"] for e in evs} - set(got)
        assert not missing, f"{len(missing)} dropped, e.g. {sorted(missing)[:5]}"
        target_id = eg_target_id(sub)
        for eid, ms in got.items():
            original = next(e for e in evs if e["id"] == eid)
            for m in ms:
                assert json.loads(m.value()) == original, "the untransformed event"
                h = headers(m)
                assert h["eg-subscription-id"] == sub.id
                assert h["eg-target-id"] == target_id
                assert (h["eg-attempts"], h["eg-last-status"]) == ("1", "400")
                assert h["eg-failed-time"].endswith("Z")
        wait_until(lambda: trace_target(raw_a, ch.id, "d-0")["deadLetterStatus"] == "SENT",
                   30, "the trace to show SENT")
    finally:
        rx.close()


def eg_target_id(sub) -> str:
    return sub.targets[0].id


def test_kafka_broker_killed_30s_during_delivery_loses_nothing(eg_a, res_a, raw_a, tansu):
    topic = uniq("e2e-kill")
    create_topic(tansu.addr, topic)
    conn = kafka_connection(res_a, tansu.addr, eg_a)
    ch, src = res_a.app_setup()
    target = SubscriptionTarget(
        name="HC.Kafka", provider_type="OFFICIAL", connection_id=conn.id,
        kafka_detail=KafkaTargetDetail(topic=topic), transform=ORIGINAL, retry_times=16)
    res_a.subscription(ch.id, [custom_source(src.name)], [target])
    n, per_second = 3_000, 100
    evs = [event(src.name, id=f"x-{i}", data={"n": i}) for i in range(n)]
    start = time.monotonic()
    killed = restarted = None
    for i in range(0, n, 20):
        put = put_raw(raw_a, ch.id, evs[i:i + 20])
        assert put.status == 200 and not put.json().get("failed_count"), put
        elapsed = time.monotonic() - start
        if killed is None and elapsed > 5:
            tansu.kill9()
            killed = time.monotonic()
        if killed and restarted is None and time.monotonic() - killed >= 30:
            tansu.start()
            restarted = time.monotonic()
        time.sleep(max(0.0, (i + 20) / per_second - (time.monotonic() - start)))
    if restarted is None:
        time.sleep(max(0.0, 30 - (time.monotonic() - killed)))
        tansu.start()
    got = consume(tansu.addr, topic, n, 240, key=lambda m: headers(m).get("ce_id"))
    missing = {e["id"] for e in evs} - set(got)
    assert not missing, f"{len(missing)} lost, e.g. {explain_missing(raw_a, ch.id, missing)}"


def test_kafka_target_over_tls(eg_a, res_a):
    """An SSL connection to a TLS-only broker: the server that trusts the broker's CA
    (`kafka_ca_file`) checks it CREATED and delivers through it; the session server, which does
    not trust that CA, fails the check (the certificate is verified)."""
    tls = TlsKafka()
    tls.start()
    srv = DataServer(extra={"kafka_ca_file": tls.ca})
    try:
        bad = kafka_connection(res_a, tls.addr, eg_a, protocol="SSL", want="CREATE_FAILED")
        detail = eg_a.show_detail_of_connection(
            ShowDetailOfConnectionRequest(connection_id=bad.id)).error_info.error_detail
        assert tls.addr in detail, detail
        topic = uniq("e2e-tls")
        create_topic(tls.addr, topic, conf=tls.client_conf())
        srv.start()
        eg, raw = srv.sdk(), srv.raw()
        res = Resources(eg, raw)
        conn = kafka_connection(res, tls.addr, eg, protocol="SSL")
        ch, src = res.app_setup()
        res.subscription(ch.id, [custom_source(src.name)], [SubscriptionTarget(
            name="HC.Kafka", provider_type="OFFICIAL", connection_id=conn.id,
            kafka_detail=KafkaTargetDetail(topic=topic), transform=ORIGINAL, retry_times=16)])
        evs = [event(src.name, id=f"t-{i}") for i in range(100)]
        publish(raw, ch.id, evs, threads=1)
        got = consume(tls.addr, topic, len(evs), 60, key=lambda m: headers(m).get("ce_id"),
                      conf=tls.client_conf())
        missing = {e["id"] for e in evs} - set(got)
        assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    finally:
        srv.stop()
        tls.stop()


# --------------------------------------------------------------------------- RocketMQ

def rocketmq_namesrv() -> str:
    return _need("OPENEG_TEST_ROCKETMQ_NAMESRV", "OPENEG_REQUIRE_ROCKETMQ")


def bench_bin() -> str:
    b = os.environ.get("OPENEG_BENCH_BIN") or str(
        Path(os.environ.get("OPENEG_BIN", "target/debug/openeg")).with_name("openeg-bench"))
    if not os.access(b, os.X_OK):
        pytest.fail(f"{b} missing: build it (cargo build -p openeg-bench)")
    return b


def rmq(*args, timeout: float = 300) -> str:
    r = subprocess.run([bench_bin(), "rocketmq", *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"openeg-bench rocketmq {args[0]}: {r.stderr[-2000:]}"
    return r.stdout


def rmq_consume(namesrv: str, topic: str, count: int, timeout: int = 180) -> list[dict]:
    out = rmq("consume", "--namesrv", namesrv, "--topic", topic, "--group", uniq("e2e-g"),
              "--count", str(count), "--timeout", str(timeout), timeout=timeout + 60)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_rocketmq_target_delivers_2000(eg_a, res_a, raw_a):
    namesrv = rocketmq_namesrv()
    topic = uniq("e2e-rmq")
    # A ROCKETMQ connection (the SDK's ConnectionCreateReq has no rocketmq_detail: raw call).
    r = raw_a.call("POST", "/v1/{p}/connections", body=json.dumps({
        "name": uniq("rmqconn"), "vpc_id": "vpc-e2e", "subnet_id": "subnet-e2e",
        "type": "ROCKETMQ", "rocketmq_detail": {"instance_id": "rmq-e2e", "addr": namesrv,
                                                "use_tls": False}}).encode())
    assert r.status == 200, r
    conn = r.json()["id"]
    res_a.track("conns", conn)
    wait_until(lambda: eg_a.show_detail_of_connection(
        ShowDetailOfConnectionRequest(connection_id=conn)).status == "CREATED", 15, "CREATED")
    ch, src = res_a.app_setup()
    r = raw_a.call("POST", "/v1/{p}/subscriptions", body=json.dumps({
        "name": uniq("sub"), "channel_id": ch.id,
        "sources": [{"name": src.name, "provider_type": "CUSTOM",
                     "filter": {"source": [{"op": "StringIn", "values": [src.name]}]}}],
        "targets": [{"name": "HC.RocketMQ", "provider_type": "OFFICIAL", "connection_id": conn,
                     "retry_times": 16,
                     "rocketmq_detail": {"topic": topic, "key_transform": {
                         "type": "VARIABLE", "value": '{"n":"$.data.n"}',
                         "template": "key-${n}"}},
                     "transform": {"type": "VARIABLE", "value": '{"n":"$.data.n"}',
                                   "template": '{"n":${n}}'}}]}).encode())
    assert r.status == 200, r
    res_a.track("subs", r.json()["id"])
    n = 2_000
    publish(raw_a, ch.id, [event(src.name, id=f"q-{i}", data={"n": i}) for i in range(n)])
    got = rmq_consume(namesrv, topic, n)
    bodies = {}
    for m in got:
        body = json.loads(m["body"])
        assert m["keys"] == f"key-{body['n']}", m
        bodies[body["n"]] = m
    assert set(bodies) == set(range(n)), f"{n - len(bodies)} missing"


def test_rocketmq_source_2000_messages_through_two_sigkills():
    namesrv = rocketmq_namesrv()
    topic = uniq("e2e-rmqsrc")
    n = 2_000
    # The topic exists (auto-created by the broker) before the source's group starts.
    rmq("produce", "--namesrv", namesrv, "--topic", topic, "--count", "1", "--prefix", "warm")
    rx = Receiver()
    srv = DataServer()
    try:
        srv.start()
        eg, raw = srv.sdk(), srv.raw()
        res = Resources(eg, raw)
        ch = res.channel()
        src = res.source(ch.id, type="ROCKETMQ", detail=RocketMqDetail(
            instance_id="rmq-e2e", group=uniq("e2e-g"), topic=topic, namesrv_address=namesrv,
            ssl_enable=False, enable_acl=False))
        res.subscription(ch.id, [custom_source(src.name)], [webhook_target(rx.url("/rmq"))])
        wait_until(lambda: eg.show_detail_of_event_source(
            ShowDetailOfEventSourceRequest(source_id=src.id)).status == "RUNNING", 30, "RUNNING")
        producer = threading.Thread(target=rmq, args=(
            "produce", "--namesrv", namesrv, "--topic", topic, "--count", str(n),
            "--prefix", "p"))
        producer.start()

        def keys():
            return {r.json()["data"]["meta"]["keys"] for r in rx.requests("/rmq")}
        for k in (1, 2):
            wait_until(lambda: len(keys()) >= k * n // 3, 120, f"{k}/3 of the messages", srv)
            srv.kill()
            srv.start()
        producer.join(300)
        want = {f"p-{i}" for i in range(n)}
        wait_until(lambda: want <= keys(), 180, "every message at the webhook", srv)
        e = next(r.json() for r in rx.requests("/rmq")
                 if r.json()["data"]["meta"]["keys"] == "p-7")
        assert e["type"] == "ROCKETMQ:CloudTrace:message" and e["source"] == src.name
        assert e["subject"] == f"topics/{topic}"
        assert e["data"]["context"]["i"] == 7
    finally:
        srv.stop()
        rx.close()


# --------------------------------------------------------------------------- RabbitMQ sources

def _pika_params(url: str):
    import pika
    return pika.URLParameters(url)


def rabbit_publish(url: str, queue: str, n: int, prefix: str):
    import pika
    conn = pika.BlockingConnection(_pika_params(url))
    try:
        ch = conn.channel()
        ch.queue_declare(queue=queue, durable=True)
        ch.confirm_delivery()
        for i in range(n):
            ch.basic_publish("", queue, json.dumps({"n": i}).encode(),
                             pika.BasicProperties(message_id=f"{prefix}-{i}", delivery_mode=2))
    finally:
        conn.close()


def rabbit_delete(url: str, queue: str):
    import pika
    conn = pika.BlockingConnection(_pika_params(url))
    try:
        conn.channel().queue_delete(queue=queue)
    finally:
        conn.close()


def rabbit_detail(url: str, queue: str, password: str | None = None) -> dict:
    u = urllib.parse.urlparse(url)
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return {"instance_id": f"amqp://{u.hostname}:{u.port or 5672}", "vhost_name": vhost,
            "queue_name": queue, "user_name": urllib.parse.unquote(u.username or "guest"),
            "password": password if password is not None
            else urllib.parse.unquote(u.password or "guest")}


def test_rabbitmq_source_10000_messages_through_two_sigkills():
    url = rabbit_url()
    queue = uniq("e2e-q")
    n = 10_000
    rabbit_publish(url, queue, n, "r")
    rx = Receiver()
    srv = DataServer(sqlite_only=False)
    try:
        srv.start()
        eg, raw = srv.sdk(), srv.raw()
        res = Resources(eg, raw)
        ch = res.channel()
        src = res.source(ch.id, type="RABBITMQ", detail=rabbit_detail(url, queue))
        res.subscription(ch.id, [custom_source(src.name)], [webhook_target(rx.url("/rmq"))])

        def ids():
            return {r.json()["id"] for r in rx.requests("/rmq")}
        for k in (1, 2):
            wait_until(lambda: len(ids()) >= k * n // 3, 120, f"{k}/3 of the messages", srv)
            srv.kill()
            srv.start()
        wait_until(lambda: len(ids()) >= n, 180, "every message at the webhook", srv)
        got = ids()
        assert got == {f"r-{i}" for i in range(n)}
        bodies = {r.json()["id"]: r.json() for r in rx.requests("/rmq")}
        e = bodies["r-7"]
        assert e["type"] == "RABBITMQ:CloudTrace:message" and e["source"] == src.name
        assert e["data"]["context"] == {"n": 7}
    finally:
        srv.stop()
        rx.close()
        rabbit_delete(url, queue)


def test_rabbitmq_wrong_password_is_error_then_running(eg_a, res_a):
    url = rabbit_url()
    queue = uniq("e2e-q")
    rabbit_publish(url, queue, 0, "w")
    try:
        ch = res_a.channel()
        src = res_a.source(ch.id, type="RABBITMQ",
                           detail=rabbit_detail(url, queue, password="wrong-pass-e2e"))
        t0 = time.monotonic()

        def status():
            return eg_a.show_detail_of_event_source(
                ShowDetailOfEventSourceRequest(source_id=src.id))
        g = wait_until(lambda: (lambda g: g if g.status == "ERROR" and g.error_info
                                and "ACCESS_REFUSED" in (g.error_info.error_detail or "")
                                else None)(status()), 5, "ERROR with the broker's reason")
        assert time.monotonic() - t0 <= 5.5
        assert "wrong-pass-e2e" not in g.error_info.error_detail
        eg_a.update_event_source(UpdateEventSourceRequest(
            source_id=src.id, body=CustomizeSourceUpdateReq(detail=rabbit_detail(url, queue))))
        wait_until(lambda: status().status == "RUNNING", 10, "RUNNING after the fix")
    finally:
        rabbit_delete(url, queue)
