"""A round-robin HTTP proxy for the cluster pass (OPENEG_E2E_CLUSTER): every request goes to
the next node in turn, whatever connection it came on, so consecutive calls of one test land
on different nodes. Requests and answers pass unchanged (the Host header included: the SDK's
signature covers it); bodies are buffered, and a chunked request body is passed on with a
Content-Length."""
from __future__ import annotations

import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; the body is re-framed.
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade", "content-length"}


class RoundRobinProxy:
    def __init__(self, host: str, port: int, nodes: list[tuple[str, int]]):
        self.nodes = nodes
        self.turn = itertools.cycle(range(len(nodes)))
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _read_chunked(self) -> bytes:
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()

            def _forward(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = self._read_chunked()
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(n) if n else None
                with proxy.lock:
                    host, port = proxy.nodes[next(proxy.turn)]
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() not in HOP:
                            conn.putheader(k, v)
                    if body is not None or self.command in ("POST", "PUT", "PATCH"):
                        conn.putheader("Content-Length", str(len(body or b"")))
                    try:
                        conn.endheaders(body)
                    except OSError:
                        # The node answered early (e.g. 413 for a body over the limit) and
                        # closed its side: its answer is still there to read.
                        pass
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response_only(r.status, r.reason)
                    for k, v in r.getheaders():
                        if k.lower() not in HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError as e:
                    msg = f"cluster proxy: node {host}:{port} failed: {e}".encode()
                    self.send_response_only(502)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
