"""Shared helpers for the OpenEG end-to-end suite.

* a standalone SDK-HMAC-SHA256 signer (docs/signing.md), independent of huaweicloudsdkcore, so
  tests can tamper with a request after signing it;
* a raw HTTP client (http.client, byte-exact: no header or URL rewriting);
* assertions for EG-shaped errors.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.client
import json
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ALGORITHM = "SDK-HMAC-SHA256"

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}-[0-9]+-[A-Za-z0-9.-]+$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MASK = "******"


# --------------------------------------------------------------------------- signer

def _enc(s: str) -> str:
    # RFC 3986 unreserved characters only, upper-case hex.
    return urllib.parse.quote(s, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    decoded = urllib.parse.unquote(raw_path)
    out = "/".join(_enc(seg) for seg in decoded.split("/"))
    if not out.endswith("/"):
        out += "/"
    return out


def _qval(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def query_pairs(query: Any) -> list[tuple[str, str]]:
    """Normalise a query given as dict or list of pairs; list values give one pair each."""
    if query is None:
        return []
    items = query.items() if isinstance(query, dict) else query
    pairs: list[tuple[str, str]] = []
    for k, v in items:
        if isinstance(v, (list, tuple)):
            pairs.extend((str(k), _qval(x)) for x in v)
        else:
            pairs.append((str(k), _qval(v)))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(pairs))


def canonical_request(method: str, raw_path: str, pairs, headers: dict, signed: list[str],
                      body: bytes) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    canon_headers = "".join(f"{h}:{lower[h].strip()}\n" for h in signed)
    if "x-sdk-content-sha256" in lower:
        payload_hash = lower["x-sdk-content-sha256"]
    else:
        payload_hash = hashlib.sha256(body or b"").hexdigest()
    return "\n".join([method.upper(), canonical_uri(raw_path), canonical_query(pairs),
                      canon_headers, ";".join(signed), payload_hash])


def string_to_sign(creq: str, date: str) -> str:
    return f"{ALGORITHM}\n{date}\n{hashlib.sha256(creq.encode()).hexdigest()}"


def signature(sk: str, sts: str) -> str:
    return hmac.new(sk.encode(), sts.encode(), hashlib.sha256).hexdigest()


def sdk_date(offset_seconds: float = 0) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_seconds)
    return t.strftime("%Y%m%dT%H%M%SZ")


@dataclass
class Req:
    method: str
    path: str                      # raw path as sent (already percent-encoded)
    query: list = field(default_factory=list)   # (key, value) pairs
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def sign(self, ak: str, sk: str, *, date: str | None = None, exclude: Iterable[str] = (),
             signed_headers: list[str] | None = None) -> "Req":
        """Sign in place the way the SDK does. `exclude` drops header names from SignedHeaders
        (the headers stay on the request); `signed_headers` forces the list."""
        if "X-Sdk-Date" not in self.headers:
            self.headers["X-Sdk-Date"] = date or sdk_date()
        if signed_headers is None:
            ex = {e.lower() for e in exclude}
            signed_headers = sorted(k.lower() for k in self.headers
                                    if "_" not in k and k.lower() not in ex
                                    and k.lower() != "authorization")
        creq = canonical_request(self.method, self.path, self.query, self.headers,
                                 signed_headers, self.body)
        sts = string_to_sign(creq, self.headers["X-Sdk-Date"])
        self.headers["Authorization"] = (f"{ALGORITHM} Access={ak}, SignedHeaders="
                                         f"{';'.join(signed_headers)}, Signature={signature(sk, sts)}")
        return self

    def target(self) -> str:
        qs = canonical_query(self.query)
        return self.path + ("?" + qs if qs else "")


def to_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()   # SDK style separators (", " and ": ")


# --------------------------------------------------------------------------- raw client

class Resp:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body.decode() or "null")

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:300]!r}>"


class Raw:
    """A raw, self-signing client bound to one credential."""

    def __init__(self, host: str, port: int, ak: str | None, sk: str | None, project: str | None):
        self.host, self.port = host, port
        self.ak, self.sk, self.project = ak, sk, project

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def prepare(self, method: str, path: str, query=None, body=None, headers=None,
                project_header: bool = True) -> Req:
        path = path.replace("{p}", self.project or "")
        h = {"User-Agent": "openeg-e2e/1.0", "Content-Type": "application/json",
             "Host": self.authority}
        if project_header and self.project:
            h["X-Project-Id"] = self.project
        if headers:
            h.update(headers)
        return Req(method.upper(), path, query_pairs(query), h, to_body(body))

    def send(self, req: Req, timeout: float = 30) -> Resp:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(req.method, req.target(), skip_host=True, skip_accept_encoding=True)
            for k, v in req.headers.items():
                conn.putheader(k, v)
            if req.body or req.method in ("POST", "PUT"):
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body or None)
            r = conn.getresponse()
            return Resp(r.status, r.headers, r.read())
        finally:
            conn.close()

    def call(self, method: str, path: str, query=None, body=None, headers=None, *,
             sign: bool = True, **sign_kw) -> Resp:
        req = self.prepare(method, path, query, body, headers)
        if sign:
            req.sign(self.ak, self.sk, **sign_kw)
        return self.send(req)

    def anon(self, method: str, path: str, query=None, body=None, headers=None) -> Resp:
        req = self.prepare(method, path, query, body, headers, project_header=False)
        return self.send(req)


# --------------------------------------------------------------------------- assertions

def assert_request_id(value):
    assert value, "X-Request-Id missing"
    assert REQUEST_ID_RE.match(value), f"X-Request-Id {value!r} not <32hex>-<ms>-<node>"


def assert_eg_error(r, status: int, code: str | set | tuple):
    """Accepts a Resp (raw client) or an SDK ClientRequestException/ServerResponseException."""
    codes = {code} if isinstance(code, str) else set(code)
    if isinstance(r, Resp):
        assert r.status == status, f"expected {status} {codes}, got {r!r}"
        rid = r.header("X-Request-Id")
        assert_request_id(rid)
        ct = r.header("Content-Type") or ""
        assert ct.lower().startswith("application/json"), f"error Content-Type {ct!r}"
        body = r.json()
        assert isinstance(body, dict), body
        assert body.get("error_code") in codes, f"expected {codes}, got {body}"
        assert isinstance(body.get("error_msg"), str) and body["error_msg"], body
        # docs/errors.md: OpenEG always includes request_id, equal to the header [dec]
        assert body.get("request_id") == rid, (body, rid)
        for k, v in body.items():
            assert not isinstance(v, dict), f"object-valued key {k} in error body"
    else:
        assert getattr(r, "status_code", None) == status, \
            f"expected {status} {codes}, got {getattr(r, 'status_code', None)} " \
            f"{getattr(r, 'error_code', None)} {getattr(r, 'error_msg', None)}"
        assert r.error_code in codes, f"expected {codes}, got {r.error_code}: {r.error_msg}"
        assert r.error_msg, "error_msg empty"
        assert_request_id(r.request_id)


def uniq(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def sdk_err(fn, *args, **kwargs):
    """Call an SDK method that must fail; return the exception."""
    from huaweicloudsdkcore.exceptions import exceptions as exc
    try:
        res = fn(*args, **kwargs)
    except (exc.ClientRequestException, exc.ServerResponseException) as e:
        return e
    raise AssertionError(f"expected an error response, got success: {res}")


def body_of(sdk_response):
    """The exact JSON body of an SDK response (SdkResponse.raw_content)."""
    return json.loads(sdk_response.raw_content.decode())
