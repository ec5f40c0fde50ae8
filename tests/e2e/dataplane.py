"""Helpers for the data-plane tests: a private `openeg serve` instance (own data_dir, SQLite or
the session's PostgreSQL choice, FunctionGraph/SMN endpoints pointing at a local receiver) that
can be SIGKILLed and restarted, plus publishing / polling helpers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from conftest import START_TIMEOUT, Server, _sdk_client, _toml_str
from eglib import Raw


class DataServer(Server):
    """A `conftest.Server` with extra config keys and kill/restart support."""

    def __init__(self, extra: dict | None = None, sqlite_only: bool = False,
                 env: dict | None = None):
        super().__init__()
        self.extra = dict(extra or {})
        self.env_extra = dict(env or {})   # e.g. a test-only OPENEG_* switch
        self.sqlite_only = sqlite_only
        self.data_dir = self.tmp / "data"
        self.cfg = self.tmp / "openeg.toml"
        self.starts = 0

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self):
        self.data_dir.mkdir(exist_ok=True)
        lines = [f"listen = {_toml_str(f'{self.host}:{self.port}')}",
                 f"data_dir = {_toml_str(str(self.data_dir))}"]
        db = None if self.sqlite_only else os.environ.get("OPENEG_E2E_DATABASE_URL")
        if db:
            from conftest import _Postgres
            self.pg = _Postgres(db)
            self.pg.create()
            lines.append(f"database_url = {_toml_str(self.pg.url)}")
        # OPENEG_E2E_LOG_URL (e.g. kafka://127.0.0.1:19092): channel logs on Kafka.
        if os.environ.get("OPENEG_E2E_LOG_URL"):
            lines.append(f"log_url = {_toml_str(os.environ['OPENEG_E2E_LOG_URL'])}")
        for k, v in self.extra.items():
            lines.append(f"{k} = {_toml_str(v) if isinstance(v, str) else v}")
        for c in (self.a, self.b):
            lines += ["", "[[credentials]]", f"access_key = {_toml_str(c.ak)}",
                      f"secret_key = {_toml_str(c.sk)}", f"project_id = {_toml_str(c.project)}",
                      f"domain_id = {_toml_str(c.domain)}"]
        self.cfg.write_text("\n".join(lines) + "\n")

    def start(self):
        if not self.cfg.exists():
            self._write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENEG_")
               or k.startswith("OPENEG_E2E") or k in ("OPENEG_LOG", "OPENEG_BIN")}
        env.update(self.env_extra)
        env.setdefault("NO_COLOR", "1")
        self.log = open(self.log_path, "ab")
        self.log.write(f"\n===== e2e: start #{self.starts + 1} =====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([str(self.bin), "serve", "--config", str(self.cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openeg serve exited with {self.proc.returncode} during "
                                   f"start-up; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # noqa: BLE001
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"openeg serve did not answer within {START_TIMEOUT}s ({last}); "
                           f"log tail:\n{self.log_tail()}")

    def kill(self):
        """SIGKILL the server (no clean shutdown)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful shutdown) and wait; returns the exit code (None if it had to be
        killed). Keeps data_dir, unlike stop()."""
        rc = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        return rc

    def restart(self):
        self.kill()
        self.start()

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None

    # ------------------------------------------------------------------ clients

    def sdk(self, which: str = "a"):
        return _sdk_client(self, self.a if which == "a" else self.b)

    def raw(self, which: str = "a") -> Raw:
        c = self.a if which == "a" else self.b
        return Raw(self.host, self.port, c.ak, c.sk, c.project)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=5) as r:
            assert r.status == 200
            return r.read().decode()

    def topic_dir(self, project: str, channel_id: str) -> Path:
        return self.data_dir / "log" / "topics" / encode_topic(f"{project}.{channel_id}")


def encode_topic(name: str) -> str:
    out = []
    for b in name.encode():
        c = chr(b)
        out.append(c if (c.isascii() and (c.isalnum() or c in "-_")) else f"%{b:02X}")
    return "".join(out)


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text → {series (name plus labels): value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


def wait_until(fn, timeout: float = 10.0, what: str = "condition", server=None,
               interval: float = 0.1):
    """Poll `fn` until it returns something truthy; return it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except AssertionError as e:
            last_exc = e
        except Exception as e:  # noqa: BLE001 - e.g. 404 before the trace exists
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc:
                msg += f" (last error: {last_exc!r})"
            if server is not None:
                msg += f"\nserver log tail:\n{server.log_tail(30)}"
            raise AssertionError(msg)
        time.sleep(interval)


def new_id(prefix: str = "ev") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def event(source: str, id: str | None = None, type: str = "e2e.test", data=None, **extra) -> dict:
    e = {"id": id or new_id(), "source": source, "specversion": "1.0", "type": type,
         "datacontenttype": "application/json",
         "data": {"n": 1} if data is None else data}
    e.update(extra)
    return e


def put_raw(raw: Raw, channel_id: str, events: list[dict], timeout: float = 30):
    """PutEvents through the raw signed client; returns the Resp."""
    req = raw.prepare("POST", f"/v1/{{p}}/channels/{channel_id}/events",
                      body=json.dumps({"events": events}).encode())
    req.sign(raw.ak, raw.sk)
    return raw.send(req, timeout=timeout)
