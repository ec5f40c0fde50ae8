"""A scriptable local HTTP receiver for data-plane tests (webhook, APIGW, FunctionGraph and SMN
fakes).

Every request is recorded (method, raw and decoded path, query, headers, body, arrival time and
the status answered). Answers are scripted per decoded path: a queue of replies consumed in
order, then a default reply (200 with `{}` unless changed).

    rx = Receiver()
    rx.script("/hook", 500, 500)                 # 500 twice, then the default 200
    rx.script("/gone", default=404)              # always 404
    rx.script("/slow", Reply(200, delay=2.0))    # first request answered after 2 s
    recs = rx.wait("/hook", count=3, timeout=10) # the first 3 requests to /hook
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    headers: dict = field(default_factory=lambda: {"Content-Type": "application/json"})


def _reply(r) -> Reply:
    return r if isinstance(r, Reply) else Reply(int(r))


@dataclass
class Rec:
    method: str
    raw_path: str          # as sent, without the query
    path: str              # percent-decoded
    query: str
    headers: dict          # lower-case name -> value (last one wins)
    body: bytes
    t: float               # time.monotonic() at arrival
    status: int = 0        # status answered

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name: str):
        return self.headers.get(name.lower())


class Receiver:
    def __init__(self, host: str = "127.0.0.1"):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.records: list[Rec] = []
        self._queues: dict[str, list[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._on_request: Callable[[Rec], None] | None = None
        self._responders: dict[str, Callable[[Rec], Reply]] = {}
        rx = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # silence
                pass

            def _handle(self):
                t = time.monotonic()
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                raw_path, _, query = self.path.partition("?")
                rec = Rec(self.command, raw_path, urllib.parse.unquote(raw_path), query,
                          {k.lower(): v for k, v in self.headers.items()}, body, t)
                responder = rx._responders.get(rec.path)
                reply = _reply(responder(rec)) if responder else rx._next_reply(rec.path)
                rec.status = reply.status
                with rx._cond:
                    rx.records.append(rec)
                    rx._cond.notify_all()
                if rx._on_request:
                    try:
                        rx._on_request(rec)
                    except Exception:  # noqa: BLE001
                        pass
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass

            do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = _handle

        class Srv(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def handle_error(self, request, client_address):  # peer resets are expected
                pass

        self._srv = Srv((host, 0), Handler)
        self.host, self.port = host, self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True,
                                        name=f"receiver-{self.port}")
        self._thread.start()

    # ------------------------------------------------------------------ scripting

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def script(self, path: str, *replies, default=None):
        """Queue replies for `path` (ints or Reply); `default` answers once the queue is empty."""
        with self._lock:
            self._queues[path] = [_reply(r) for r in replies]
            if default is not None:
                self._defaults[path] = _reply(default)

    def respond(self, path: str, fn: Callable[[Rec], "Reply | int"]):
        """Answer every request to `path` with `fn(request)` (called on the server thread)."""
        with self._lock:
            self._responders[path] = fn

    def on_request(self, fn: Callable[[Rec], None] | None):
        self._on_request = fn

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            q = self._queues.get(path)
            if q:
                return q.pop(0)
            return self._defaults.get(path, Reply())

    # ------------------------------------------------------------------ inspection

    def requests(self, path: str | None = None, prefix: str | None = None) -> list[Rec]:
        with self._lock:
            return [r for r in self.records
                    if (path is None or r.path == path)
                    and (prefix is None or r.path.startswith(prefix))]

    def count(self, path: str | None = None, prefix: str | None = None) -> int:
        return len(self.requests(path, prefix))

    def wait(self, path: str | None = None, count: int = 1, timeout: float = 10.0,
             prefix: str | None = None, pred: Callable[[Rec], bool] | None = None) -> list[Rec]:
        """Wait until at least `count` matching requests arrived; returns all matching ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.records
                       if (path is None or r.path == path)
                       and (prefix is None or r.path.startswith(prefix))
                       and (pred is None or pred(r))]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({r.path for r in self.records})
                    raise AssertionError(
                        f"receiver: expected >= {count} request(s) to "
                        f"{path or prefix or '*'} within {timeout}s, got {len(got)}; "
                        f"paths seen: {seen}")
                self._cond.wait(min(left, 0.2))

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()
