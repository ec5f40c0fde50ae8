"""Session fixtures: a real `openeg serve` process, SDK clients and raw signed clients for two
tenants (projects A and B).

Environment:
  OPENEG_BIN                path of the binary (default <repo>/target/debug/openeg)
  OPENEG_E2E_DATABASE_URL   if set, a fresh PostgreSQL database is created on that server for the
                            session (and dropped afterwards); otherwise SQLite in the temp dir.
  OPENEG_E2E_KEEP           if set, keep the temp dir (config, data, server log) after the run.
  OPENEG_E2E_CLUSTER        N (>= 2): the session server is a cluster of N nodes on one fresh
                            PostgreSQL database (OPENEG_E2E_DATABASE_URL, required) and the Kafka
                            log at OPENEG_TEST_KAFKA_BROKERS (required), behind a round-robin
                            HTTP proxy (`cluster_proxy.py`): each request goes to the next node.
                            Tests that start servers of their own are skipped in that mode (the
                            single-node passes run them).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eglib import Raw  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


@dataclass
class Cred:
    ak: str
    sk: str
    project: str
    domain: str


def _cred() -> Cred:
    alnum = string.ascii_uppercase + string.digits
    ak = "AKE2E" + "".join(secrets.choice(alnum) for _ in range(15))
    sk = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return Cred(ak, sk, secrets.token_hex(16), secrets.token_hex(16))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Postgres:
    """Creates a throw-away database on the server named by OPENEG_E2E_DATABASE_URL."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = "openeg_e2e_" + secrets.token_hex(6)
        u = urllib.parse.urlsplit(admin_url)
        self.url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + self.name, u.query, u.fragment))

    def _psql(self, sql: str):
        try:
            import psycopg  # type: ignore
            with psycopg.connect(self.admin_url, autocommit=True) as c:
                c.execute(sql)
            return
        except ImportError:
            pass
        subprocess.run(["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                       check=True, capture_output=True, timeout=30)

    def create(self):
        self._psql(f'CREATE DATABASE "{self.name}"')

    def drop(self):
        try:
            self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception as e:  # pragma: no cover - best effort
            print(f"warning: could not drop {self.name}: {e}", file=sys.stderr)


class Server:
    def __init__(self, extra_lines: list[str] | None = None, db_url: str | None = None):
        self.bin = Path(os.environ.get("OPENEG_BIN", REPO / "target" / "debug" / "openeg"))
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="openeg-e2e-"))
        self.log_path = self.tmp / "server.log"
        self.a, self.b = _cred(), _cred()
        # A project of its own for the schemathesis fuzz run (test_openapi.py), so what the
        # fuzzer creates never meets the other tests.
        self.fuzz = _cred()
        self.proc: subprocess.Popen | None = None
        self.pg: _Postgres | None = None
        # Cluster nodes: extra config lines, and the cluster's database (made by the cluster).
        self.extra_lines = list(extra_lines or [])
        self.db_url = db_url

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])

    def start(self):
        if not self.bin.is_file() or not os.access(self.bin, os.X_OK):
            pytest.exit(f"OPENEG_BIN {self.bin} does not exist or is not executable; "
                        "build it first (cargo build -p openeg)", returncode=3)
        data_dir = self.tmp / "data"
        data_dir.mkdir()
        lines = [f"listen = {_toml_str(f'{self.host}:{self.port}')}",
                 f"data_dir = {_toml_str(str(data_dir))}"]
        db = os.environ.get("OPENEG_E2E_DATABASE_URL")
        if self.db_url:
            lines.append(f"database_url = {_toml_str(self.db_url)}")
        elif db:
            self.pg = _Postgres(db)
            self.pg.create()
            lines.append(f"database_url = {_toml_str(self.pg.url)}")
        # OPENEG_E2E_LOG_URL (e.g. kafka://127.0.0.1:19092): channel logs on Kafka.
        if os.environ.get("OPENEG_E2E_LOG_URL") and not self.db_url:
            lines.append(f"log_url = {_toml_str(os.environ['OPENEG_E2E_LOG_URL'])}")
        lines += self.extra_lines
        for c in (self.a, self.b, self.fuzz):
            lines += ["", "[[credentials]]", f"access_key = {_toml_str(c.ak)}",
                      f"secret_key = {_toml_str(c.sk)}", f"project_id = {_toml_str(c.project)}",
                      f"domain_id = {_toml_str(c.domain)}"]
        cfg = self.tmp / "openeg.toml"
        cfg.write_text("\n".join(lines) + "\n")
        # config keys may be overridden by OPENEG_<KEY>; keep the caller's from leaking in
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENEG_")
               or k.startswith("OPENEG_E2E") or k in ("OPENEG_LOG", "OPENEG_BIN")}
        env.setdefault("NO_COLOR", "1")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.bin), "serve", "--config", str(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                pytest.exit(f"openeg serve exited with {self.proc.returncode} during start-up; "
                            f"log tail:\n{tail}", returncode=3)
            try:
                with urllib.request.urlopen(self.base_url + "/", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # noqa: BLE001
                last = e
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        pytest.exit(f"openeg serve did not answer GET / within {START_TIMEOUT}s ({last}); "
                    f"log tail:\n{tail}", returncode=3)

    def stop(self) -> str | None:
        """SIGTERM the server; returns a problem description if it did not stop cleanly."""
        problem = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
                if rc != 0:
                    problem = f"openeg serve exited with {rc} after SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                problem = "openeg serve did not stop within 10 s of SIGTERM (killed)"
        elif self.proc:
            problem = f"openeg serve died during the session (exit {self.proc.returncode})"
        if problem:
            problem += "; log tail:\n" + self.log_tail()
        if getattr(self, "log", None):
            self.log.close()
        if self.pg:
            self.pg.drop()
        if not os.environ.get("OPENEG_E2E_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"\nopeneg e2e temp dir kept: {self.tmp}", file=sys.stderr)
        return problem


CLUSTER = int(os.environ.get("OPENEG_E2E_CLUSTER", "0") or 0)


class ClusterServer(Server):
    """OPENEG_E2E_CLUSTER nodes sharing one database, one Kafka log, one secrets key and the
    session's credentials, behind a round-robin proxy listening where a single server would."""

    def __init__(self, n: int):
        super().__init__()
        import base64
        admin = os.environ.get("OPENEG_E2E_DATABASE_URL")
        brokers = os.environ.get("OPENEG_TEST_KAFKA_BROKERS", "").strip()
        if not admin or not brokers:
            pytest.exit("OPENEG_E2E_CLUSTER needs OPENEG_E2E_DATABASE_URL and "
                        "OPENEG_TEST_KAFKA_BROKERS", returncode=3)
        self.cluster_pg = _Postgres(admin)
        key = base64.b64encode(os.urandom(32)).decode()
        self.nodes = []
        for i in range(n):
            node = Server([f"node_name = \"node-{i}\"", f"encryption_key = \"{key}\"",
                           f"log_url = {_toml_str('kafka://' + brokers)}"],
                          db_url=self.cluster_pg.url)
            node.a, node.b, node.fuzz = self.a, self.b, self.fuzz
            self.nodes.append(node)
        self.proxy = None

    def start(self):
        from cluster_proxy import RoundRobinProxy
        self.cluster_pg.create()
        for node in self.nodes:
            node.start()
        self.proc = self.nodes[0].proc
        self.log_path = self.nodes[0].log_path
        self.proxy = RoundRobinProxy(self.host, self.port,
                                     [(n.host, n.port) for n in self.nodes])
        self.proxy.start()

    def log_tail(self, n: int = 60) -> str:
        per = max(10, n // len(self.nodes))
        return "\n".join(f"--- node-{i} ---\n{node.log_tail(per)}"
                         for i, node in enumerate(self.nodes))

    def stop(self) -> str | None:
        if self.proxy:
            self.proxy.stop()
        problems = [p for p in (node.stop() for node in self.nodes) if p]
        self.cluster_pg.drop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return "; ".join(problems) or None


_SERVER: Server | None = None


@pytest.fixture(scope="session")
def server():
    global _SERVER
    s = ClusterServer(CLUSTER) if CLUSTER > 1 else Server()
    _SERVER = s
    s.start()
    yield s
    problem = s.stop()
    _SERVER = None
    if problem:
        pytest.fail(problem, pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "single_node: reads the state of one server process "
                            "(its log, its /metrics): skipped against a cluster")


def pytest_collection_modifyitems(config, items):
    """The fuzz run goes last: what it leaves behind (deliveries retrying, probes) then cannot
    slow down the timing-sensitive tests. Against a cluster, only tests of the session server
    run (plus those marked `single_node` are skipped: they read one process's state)."""
    if CLUSTER > 1:
        for i in items:
            if "server" not in i.fixturenames:
                i.add_marker(pytest.mark.skip(
                    reason="starts servers of its own: run by the single-node passes"))
            elif i.get_closest_marker("single_node"):
                i.add_marker(pytest.mark.skip(
                    reason="reads one process's state: not meaningful behind the proxy"))
    last = [i for i in items
            if getattr(getattr(i, "module", None), "__name__", "") == "test_openapi"
            and "fuzz" in i.name]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _SERVER is not None and _SERVER.proc is not None:
        alive = _SERVER.proc.poll() is None
        rep.sections.append((f"openeg server log tail (process {'alive' if alive else 'DEAD'})",
                             _SERVER.log_tail(30)))


# ----------------------------------------------------------------------------- clients

def _sdk_client(server: Server, cred: Cred):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkeg.v1 import EgClient
    cfg = HttpConfig.get_default_config()
    cfg.timeout = (5, 30)
    return (EgClient.new_builder()
            .with_http_config(cfg)
            .with_credentials(BasicCredentials(cred.ak, cred.sk, cred.project))
            .with_endpoint(server.base_url)
            .build())


@pytest.fixture(scope="session")
def eg_a(server):
    return _sdk_client(server, server.a)


@pytest.fixture(scope="session")
def eg_b(server):
    return _sdk_client(server, server.b)


@pytest.fixture(scope="session")
def raw_a(server):
    return Raw(server.host, server.port, server.a.ak, server.a.sk, server.a.project)


@pytest.fixture(scope="session")
def raw_b(server):
    return Raw(server.host, server.port, server.b.ak, server.b.sk, server.b.project)


@pytest.fixture(scope="session")
def pa(server):
    return server.a.project


@pytest.fixture(scope="session")
def pb(server):
    return server.b.project


@pytest.fixture
def res_a(eg_a, raw_a):
    from sdkx import Resources
    r = Resources(eg_a, raw_a)
    yield r
    r.cleanup()


@pytest.fixture
def res_b(eg_b, raw_b):
    from sdkx import Resources
    r = Resources(eg_b, raw_b)
    yield r
    r.cleanup()
