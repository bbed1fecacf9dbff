"""A MAST-compatible HTTP server on loopback, for tests, demos and benchmarks.

It speaks the two MAST download URL shapes and ``/whoami``, serves
deterministic content (see `~astroquery_mastbulk.testing.content`), honours
``Range``, and can inject faults file by file.  It also answers the product-list
queries astroquery sends (``Observations.query_criteria`` by program and
``Observations.get_product_list``, through the Mashup ``/api/v0/invoke`` and
``columnsconfig``; ``MastMissions.get_product_list``
through ``post_list_products``) with the deterministic lists of
`~astroquery_mastbulk.testing.catalog`.  Standard library only.
"""

import collections
import dataclasses
import email.utils
import hashlib
import http.server
import itertools
import json
import re
import socket
import threading
import time
import urllib.parse

from .catalog import CAOM_OBSERVATION_FIELDS, caom_columns_config, caom_observations, caom_products
from .catalog import CAOM_PRODUCT_FIELDS as _CAOM_FIELDS
from .catalog import mission_products
from .content import file_sha256, file_size, iter_file_bytes

__all__ = ["MastServer", "FileSpec", "Fault", "RequestRecord", "FAULT_KINDS", "API_ENDPOINTS"]

#: Fault kinds accepted by `MastServer.add_fault`.
FAULT_KINDS = frozenset(
    {"status", "429", "cut", "short", "slow", "ignore_range", "redirect", "change"})
# Only faults that replace the whole answer make sense for HEAD; the others act
# on the body, so a HEAD must not use them up.
_HEAD_FAULTS = frozenset({"status", "429", "redirect"})
#: Query endpoints (POST); faults for them are queued under these names.
API_ENDPOINTS = ("invoke", "columnsconfig", "post_list_products")
_API_FAULTS = frozenset({"status", "429", "slow"})

_DEFAULT_LAST_MODIFIED = 1767225600.0  # 2026-01-01T00:00:00Z
_DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                      socket.timeout)
_PORTAL_RE = re.compile(r"^/search/([a-z0-9_\-]+)/api/v0\.1/retrieve_product/?$")
_DOWNLOAD_PATH = "/api/v0.1/Download/file"
_INVOKE_PATH = "/api/v0/invoke"
_COLUMNS_CONFIG_PATH = "/portal/Mashup/Mashup.asmx/columnsconfig"
_LIST_PRODUCTS_RE = re.compile(r"^/search/([a-z0-9_\-]+)/api/v0\.1/post_list_products/?$")
_MAX_BODY = 1 << 20
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CHUNK = 1 << 20


@dataclasses.dataclass
class FileSpec:
    """Configuration of one served file.

    Attributes
    ----------
    size : int
        Size in bytes.
    version : int
        Content version; bumping it changes the bytes, not the size.
    last_modified : float
        POSIX time sent as ``Last-Modified``.
    eap : bool
        Exclusive-access file: needs a valid token.
    checksum : bool
        Send ``X-Checksum-Sha256`` for this file.
    """

    size: int
    version: int = 0
    last_modified: float = _DEFAULT_LAST_MODIFIED
    eap: bool = False
    checksum: bool = False


@dataclasses.dataclass
class Fault:
    """One injected fault, consumed by one request."""

    kind: str
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RequestRecord:
    """What the server saw and answered for one request.

    Attributes
    ----------
    method, path : str
        Request method and URL-decoded path.
    query : dict
        Decoded query parameters (last value wins).
    name : str or None
        Requested file name for download URLs.
    headers : dict
        Request headers with lower-case keys.
    range : str or None
        The ``Range`` header as sent.
    status : int
        Status code answered (0 if the client vanished first).
    bytes_sent : int
        Body bytes written.
    client : tuple
        ``(host, port)`` of the client.
    connection : int
        Serial number of the TCP connection (1, 2, ...): unlike the client's port, which the
        operating system hands out again once a connection is closed, never reused.
    pid : str or None
        Value of the ``X-Mastbulk-Pid`` request header.
    started, finished : float
        `time.monotonic` when the request was parsed and when the answer ended.
    endpoint : str or None
        ``"file"``, ``"whoami"``, one of `API_ENDPOINTS`, or None (unknown path).
    body : object
        For query endpoints, the decoded request: the Mashup request (dict), the
        ``colConfigId``, or the JSON body of ``post_list_products``.
    """

    method: str
    path: str
    query: dict
    name: "str | None"
    headers: dict
    range: "str | None"
    status: int = 0
    bytes_sent: int = 0
    client: tuple = ("", 0)
    connection: int = 0
    pid: "str | None" = None
    started: float = 0.0
    finished: float = 0.0
    endpoint: "str | None" = None
    body: object = None


def _as_timestamp(value):
    if value is None:
        return _DEFAULT_LAST_MODIFIED
    if isinstance(value, str):
        return email.utils.parsedate_to_datetime(value).timestamp()
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)


def _etag(name, spec):
    raw = f"{name}\0{spec.version}\0{spec.size}".encode("utf-8", "surrogatepass")
    return '"' + hashlib.sha1(raw).hexdigest()[:20] + '"'


def _parse_range(header, size):
    """Return ``(start, end_exclusive)``, ``None`` to ignore, or ``"416"``."""
    match = _RANGE_RE.match(header or "")
    if not match or match.groups() == ("", ""):
        return None  # RFC 9110: an unsupported Range is ignored
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        return (max(0, size - suffix), size) if suffix else "416"
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size:
        return "416"
    return None if end <= start else (start, end)


def _extract_token(headers):
    auth = headers.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "mast_token" and value:
            return value.strip('"')
    return None


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog (5) drops SYNs when a client opens dozens at once.
    request_queue_size = 256

    def __init__(self, address, handler, owner):
        self.owner = owner
        self.connection_serials = itertools.count(1)  # next() on it is atomic: no lock needed
        self.open_sockets = set()
        self.sockets_lock = threading.Condition()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        try:
            super().shutdown_request(request)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(request)
                self.sockets_lock.notify_all()

    def handle_error(self, request, client_address):
        pass  # client disconnects are expected; tracebacks are noise

    def close_clients(self, timeout=5.0):
        """Wake handler threads blocked on idle keep-alive sockets and wait."""
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets_lock.wait_for(lambda: not self.open_sockets, timeout)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MastBulkTestServer/1.0"
    # Bounds how long an idle keep-alive connection pins a thread.
    timeout = 120
    # Headers and body go out in separate writes: with Nagle on, each response stalls ~40 ms
    # waiting for the client's delayed ACK, which no real server (or benchmark) should show.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        self._connection = next(self.server.connection_serials)

    def handle_one_request(self):
        # Malformed requests are answered by the base class before any record exists.
        self._record = None
        super().handle_one_request()

    def send_response(self, code, message=None):
        if self._record is not None:
            self._record.status = code
        super().send_response(code, message)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # -- plumbing -------------------------------------------------------------

    def _dispatch(self, method):
        owner = self.server.owner
        split = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._record = RequestRecord(
            method=method, path=urllib.parse.unquote(split.path),
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            name=None, headers=headers, range=headers.get("range"),
            client=tuple(self.client_address), connection=self._connection, pid=headers.get("x-mastbulk-pid"),
            started=time.monotonic())
        self._generation, self._wake = owner._enter()
        self._committed = self._counted = False
        try:
            self._route(owner)
        except _DISCONNECT_ERRORS:
            self.close_connection = True
        finally:
            self._commit()

    def _commit(self):
        """Log the request; called before the last write so a client never sees
        its answer complete before the record exists."""
        if not self._committed:
            self._committed = True
            self._record.finished = time.monotonic()
            self.server.owner._append_record(self._record, self._counted, self._generation)

    def _route(self, owner):
        rec = self._record
        if rec.path == "/whoami":
            rec.endpoint = "whoami"
            return self._whoami(owner)
        if self.command == "POST":
            return self._route_query(owner)
        if _PORTAL_RE.match(rec.path):
            name = rec.query.get("product_name", "")
        elif rec.path.rstrip("/") == _DOWNLOAD_PATH:
            uri = rec.query.get("uri", "")
            if not uri.startswith("mast:"):
                return self._simple(400, {"error": "uri must start with mast:"})
            name = uri.rsplit("/", 1)[-1]
        else:
            return self._simple(404, {"error": "not found"})
        if not name:
            return self._simple(400, {"error": "no product name"})
        rec.name, rec.endpoint = name, "file"
        self._counted = True
        owner._begin_file(self._generation)
        self._serve_file(owner, name)

    # -- product-list queries (POST) --------------------------------------------

    def _route_query(self, owner):
        rec, path = self._record, self._record.path.rstrip("/")
        mission = _LIST_PRODUCTS_RE.match(rec.path)
        rec.endpoint = ("invoke" if path == _INVOKE_PATH else "columnsconfig" if path == _COLUMNS_CONFIG_PATH
                        else "post_list_products" if mission else None)
        if rec.endpoint is None:
            return self._simple(404, {"error": "not found"})
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True  # the body is left unread
            return self._simple(413 if length.isdigit() else 400, {"error": "bad request length"})
        raw = self.rfile.read(int(length)).decode("utf-8", "replace")
        fault = owner._take_fault(rec.endpoint, "POST")
        if self._answer_error_fault(fault):
            return None
        if fault and fault.kind == "slow":
            self._wake.wait(float(fault.params.get("delay", 1.0)))
        form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        if rec.endpoint == "columnsconfig":
            rec.body = form.get("colConfigId", "")
            return self._simple(200, caom_columns_config(rec.body))
        try:
            rec.body = json.loads(form["request"] if rec.endpoint == "invoke" else raw)
            if rec.endpoint == "invoke":
                answer = _mashup_answer(rec.body, owner.size_of)
            else:
                answer = _list_products_answer(mission.group(1), rec.body, owner.size_of)
        except (KeyError, ValueError, TypeError):
            return self._simple(400, {"error": "malformed request"})
        return self._simple(200, answer)

    def _simple(self, status, body, headers=()):
        """Send a small complete answer; JSON if ``body`` is not bytes."""
        if not isinstance(body, bytes):
            payload, ctype = json.dumps(body).encode(), "application/json"
        else:
            payload, ctype = body, "text/plain; charset=utf-8"
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if self.command == "HEAD" or not payload:
            self._commit()
            return self.end_headers()
        self.end_headers()
        self._record.bytes_sent = len(payload)
        self._commit()
        self.wfile.write(payload)

    def _answer_error_fault(self, fault):
        """Answer a ``status`` or ``429`` fault in place of the request; True if it was one."""
        if fault is None or fault.kind not in ("status", "429"):
            return False
        if fault.kind == "status":
            status = int(fault.params.get("status", 500))
            self._simple(status, f"injected {status}\n".encode())
        else:
            retry = str(fault.params.get("retry_after", 1))
            self._simple(429, b"too many requests\n", [("Retry-After", retry)])
        return True

    def _whoami(self, owner):
        token = _extract_token(self._record.headers)
        display = owner.tokens.get(token) if token is not None else None
        if display is None:
            return self._simple(200, {"anon": True, "attrib": {}})
        return self._simple(200, {"anon": False, "attrib": {"display_name": display},
                                  "ezid": display})

    # -- files ----------------------------------------------------------------

    def _serve_file(self, owner, name):
        if owner.latency:
            time.sleep(owner.latency)
        if name in owner.missing:
            return self._simple(404, {"error": f"{name} not found"})
        fault = owner._take_fault(name, self.command)
        kind = fault.kind if fault else None
        if self._answer_error_fault(fault) or self._refuse_unauthorized(owner, name):
            return None
        if kind == "redirect":
            to = fault.params["to"]
            target = to if fault.params.get("full") else to.rstrip("/") + self.path
            return self._simple(int(fault.params.get("status", 302)), b"",
                                [("Location", target)])
        if owner.redirect_all_to:
            return self._simple(302, b"", [("Location", owner.redirect_all_to.rstrip("/")
                                            + self.path)])
        spec = owner.file_spec(name)
        if kind == "change":
            # Bumped before answering: a client may ask again as soon as it has the body.
            owner.bump_version(name, size=fault.params.get("size"))
        if kind == "slow" and "after" not in fault.params:
            self._wake.wait(float(fault.params.get("delay", 1.0)))
        self._send_body(name, spec, fault)

    def _refuse_unauthorized(self, owner, name):
        spec = owner._spec(name)
        if not (spec.eap or name in owner.forbidden):
            return False
        token = _extract_token(self._record.headers)
        if token is None or token not in owner.tokens:
            self._simple(401, {"error": "Unauthorized",
                               "detail": f"{name} is exclusive access; a valid token is needed"})
        elif name in owner.forbidden:
            self._simple(403, {"error": "Forbidden",
                               "detail": f"{owner.tokens[token]} may not access {name}"})
        else:
            return False
        return True

    def _send_body(self, name, spec, fault):
        owner = self.server.owner
        size, kind = spec.size, fault.kind if fault else None
        span = None
        if not (owner.ignore_range or kind == "ignore_range"):
            span = _parse_range(self._record.range, size)
        if span == "416":
            return self._simple(416, b"range not satisfiable\n",
                                [("Content-Range", f"bytes */{size}")])
        start, end = span or (0, size)
        self.send_response(206 if span else 200)
        self._file_headers(name, spec, end - start)
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if self.command == "HEAD" or start == end:
            self._commit()
            return self.end_headers()
        self.end_headers()
        limit, pause = end - start, None
        if kind in ("cut", "short"):
            limit = min(limit, int(fault.params.get("after", (end - start) // 2)))
        elif kind == "slow" and "after" in fault.params:  # a stall mid-body
            pause = (start + int(fault.params["after"]), float(fault.params.get("delay", 1.0)))
        self._write_range(name, spec, start, start + limit, pause)
        if kind == "cut":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "short":
            self.close_connection = True

    def _file_headers(self, name, spec, length):
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", _etag(name, spec))
        self.send_header("Last-Modified",
                         email.utils.formatdate(spec.last_modified, usegmt=True))
        self.send_header("Content-Disposition", f"attachment; filename={name}")
        if spec.checksum or self.server.owner.send_checksums:
            self.send_header("X-Checksum-Sha256",
                             file_sha256(name, spec.size, spec.version))

    def _write_range(self, name, spec, start, end, pause=None):
        """Send bytes ``[start, end)``; ``pause`` is ``(offset, seconds)``: hold still at offset."""
        at, seconds = pause or (end, 0.0)
        at = min(max(at, start), end)
        self._write_span(name, spec, start, at, end - start)
        if pause:
            self._wake.wait(seconds)
        self._write_span(name, spec, at, end, end - start)

    def _write_span(self, name, spec, start, end, total):
        write, rec = self.wfile.write, self._record
        for piece in iter_file_bytes(name, spec.size, start, end, spec.version, _CHUNK):
            rec.bytes_sent += len(piece)
            if rec.bytes_sent >= total:
                self._commit()
            try:
                write(piece)
            except _DISCONNECT_ERRORS:
                rec.bytes_sent -= len(piece)
                raise


def _mashup_answer(request, size_of):
    """A Mashup ``json`` answer to ``request`` (a dict), one page of it as astroquery pages."""
    if not isinstance(request, dict):
        return {"status": "ERROR", "msg": "request must be a JSON object"}
    service, params = request.get("service"), request.get("params") or {}
    if service == "Mast.Caom.Products":
        obsids = [part.strip() for part in str(params.get("obsid", "")).split(",") if part.strip()]
        if not obsids:
            return {"status": "ERROR", "msg": "obsid is required"}
        rows, fields = [row for obsid in obsids for row in caom_products(obsid, size_of)], _CAOM_FIELDS
    elif service == "Mast.Caom.Filtered":
        try:
            rows, fields = caom_observations(params.get("filters") or []), CAOM_OBSERVATION_FIELDS
        except ValueError as err:
            return {"status": "ERROR", "msg": str(err)}
    else:
        return {"status": "ERROR", "msg": f"unsupported service {service!r}"}
    pagesize = max(1, int(request.get("pagesize") or 50000))
    page = max(1, int(request.get("page") or 1))
    shown = rows[(page - 1) * pagesize:page * pagesize]
    return {"status": "COMPLETE", "msg": "", "data": shown,
            "fields": [{"name": "_selected_", "type": "boolean"}]
            + [{"name": name, "type": kind} for name, kind in fields],
            "paging": {"page": page, "pageSize": pagesize, "pagesFiltered": -(-len(rows) // pagesize),
                       "rows": len(shown), "rowsFiltered": len(rows), "rowsTotal": len(rows)}}


def _list_products_answer(mission, body, size_of):
    """A ``post_list_products`` answer: every product of every dataset in ``body["dataset_ids"]``."""
    ids = body.get("dataset_ids") if isinstance(body, dict) else None
    if isinstance(ids, str):
        ids = [ids]
    return {"products": [row for dataset in ids or ()
                         for row in mission_products(mission, str(dataset), size_of)]}


class MastServer:
    """MAST-compatible HTTP server bound to loopback, run in a background thread.

    Parameters
    ----------
    host : str, optional
        Address to bind.
    port : int, optional
        Port to bind; 0 picks a free one.
    latency : float, optional
        Seconds slept before answering every file GET/HEAD.
    default_size : int, optional
        Size of every unconfigured file; default `file_size` of its name.
    tokens : dict, optional
        Valid tokens mapped to their display names.
    send_checksums : bool, optional
        Send ``X-Checksum-Sha256`` for every file.
    tls : ssl.SSLContext, optional
        A server-side context (certificate and key loaded): serve HTTPS with it.

    Examples
    --------
    >>> with MastServer() as srv:  # doctest: +SKIP
    ...     srv.set_file("jw01_x_cal.fits", size=5760, eap=True)
    ...     srv.add_fault("jw01_x_cal.fits", "status", status=503)
    """

    def __init__(self, host="127.0.0.1", port=0, latency=0.0, default_size=None,
                 tokens=None, send_checksums=False, tls=None):
        self.host, self.port = host, port
        self.tls = tls
        self.latency = latency
        self.default_size = default_size
        self.tokens = dict(tokens or {})
        self.send_checksums = send_checksums
        self.log = []
        self._lock = threading.RLock()
        # Requests are tagged with the reset they began after; a reset also ends their slow faults.
        self._generation = 0
        self._wake = threading.Event()
        self._httpd = None
        self._thread = None
        self._init_state()

    def _init_state(self):
        self.files = {}
        self.missing = set()
        self.forbidden = set()
        self.redirect_all_to = None
        self.ignore_range = False
        self._faults = collections.defaultdict(collections.deque)
        self._active = self._max_active = 0

    # -- lifecycle ------------------------------------------------------------

    @property
    def url(self):
        """Base URL, ``http://HOST:PORT`` or ``https://...`` (no trailing slash)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self):
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        if self.tls is not None:
            # The handshake happens in each connection's thread, at its first read, not in accept().
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"MastServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, drop open connections and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._end_slow_faults()  # their threads answer, so close_clients need not wait for them
        httpd.shutdown()
        httpd.close_clients()
        httpd.server_close()
        self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<MastServer {self.url} files={len(self.files)} requests={len(self.log)}>"

    # -- configuration --------------------------------------------------------

    def set_file(self, name, size=None, version=0, last_modified=None, eap=False,
                 checksum=False):
        """Register (or replace) the configuration of one file.

        Parameters
        ----------
        name : str
            File name as it appears in the URL.
        size : int, optional
            Size in bytes; default as for unconfigured files.
        version : int, optional
            Content version.
        last_modified : float, datetime or str, optional
            POSIX time, aware datetime or HTTP date; default 2026-01-01.
        eap : bool, optional
            Require a valid token.
        checksum : bool, optional
            Send ``X-Checksum-Sha256``.

        Returns
        -------
        FileSpec
        """
        spec = FileSpec(size=self._default_size(name) if size is None else int(size),
                        version=version, last_modified=_as_timestamp(last_modified),
                        eap=eap, checksum=checksum)
        with self._lock:
            self.files[name] = spec
        return spec

    def bump_version(self, name, size=None):
        """Change a file's content, as when the archive reprocesses it.

        Parameters
        ----------
        name : str
            File name.
        size : int, optional
            New size; default unchanged.

        Returns
        -------
        FileSpec
        """
        with self._lock:
            spec = self.files.get(name) or self.set_file(name)
            spec.version += 1
            if size is not None:
                spec.size = int(size)
            return spec

    def add_fault(self, name, kind, count=1, **params):
        """Queue ``count`` faults of ``kind`` for the next requests of ``name``.

        Parameters
        ----------
        name : str
            File name, or one of `API_ENDPOINTS` for the product-list queries
            (which take only ``status``, ``429`` and ``slow``).
        kind : str
            One of `FAULT_KINDS`: ``status``, ``429``, ``cut``, ``short``,
            ``slow``, ``ignore_range``, ``redirect``, ``change``.
        count : int, optional
            How many consecutive requests get this fault.
        **params
            Kind-specific: ``status``; ``retry_after``; ``after`` (body bytes sent before a cut
            or short end, or before a slow answer's pause, which is otherwise before the
            answer); ``delay``;
            ``to``, ``full`` and ``status`` for redirects; ``size`` for change.
        """
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if name in API_ENDPOINTS and kind not in _API_FAULTS:
            raise ValueError(f"{name} takes only {sorted(_API_FAULTS)} faults, not {kind!r}")
        with self._lock:
            self._faults[name].extend(Fault(kind, dict(params)) for _ in range(count))

    def pending_faults(self, name):
        """Return the kinds of faults still queued for ``name``."""
        with self._lock:
            return [f.kind for f in self._faults.get(name, ())]

    def drop_idle_connections(self):
        """Close every client connection, as a server does to keep-alive connections left idle."""
        if self._httpd is not None:
            self._httpd.close_clients()

    def reset(self):
        """Forget requests, faults and per-file settings (keeps tokens, latency).

        Requests still in flight are forgotten too: they are neither logged when they end nor
        counted by `max_concurrency`, and a slow fault they are in ends now. (They began before
        the reset, in an earlier test, and would otherwise show up in the next one's log.)
        """
        with self._lock:
            self.log.clear()
            self._init_state()
            self._generation += 1
            self._end_slow_faults()

    # -- inspection -----------------------------------------------------------

    def file_spec(self, name):
        """Return the effective `FileSpec` of ``name`` (a copy)."""
        return dataclasses.replace(self._spec(name))

    def etag(self, name):
        """Return the ``ETag`` header value currently served for ``name``."""
        return _etag(name, self._spec(name))

    def requests(self, name=None, method=None, endpoint=None):
        """Return logged requests, optionally only for one file, method and/or endpoint."""
        with self._lock:
            records = list(self.log)
        return [r for r in records
                if (name is None or r.name == name) and (method is None or r.method == method)
                and (endpoint is None or r.endpoint == endpoint)]

    def connections(self):
        """Return the serial numbers of the TCP connections seen (see `RequestRecord`)."""
        with self._lock:
            return {r.connection for r in self.log}

    def max_concurrency(self):
        """Return the largest number of file requests that were in flight at once."""
        with self._lock:
            return self._max_active

    # -- used by the handler --------------------------------------------------

    def size_of(self, name):
        """Return the size currently served for ``name``."""
        return self._spec(name).size

    def _default_size(self, name):
        return self.default_size if self.default_size is not None else file_size(name)

    def _spec(self, name):
        with self._lock:
            spec = self.files.get(name)
        return spec if spec is not None else FileSpec(size=self._default_size(name))

    def _take_fault(self, name, method):
        with self._lock:
            queue = self._faults.get(name)
            if not queue or (method == "HEAD" and queue[0].kind not in _HEAD_FAULTS):
                return None
            return queue.popleft()

    def _end_slow_faults(self):
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()

    def _enter(self):
        """The generation a request begins in, and the event that ends its slow fault early."""
        with self._lock:
            return self._generation, self._wake

    def _begin_file(self, generation):
        with self._lock:
            if generation == self._generation:
                self._active += 1
                self._max_active = max(self._max_active, self._active)

    def _append_record(self, record, counted, generation):
        with self._lock:
            if generation != self._generation:
                return  # begun before a reset: it belongs to an earlier test
            self.log.append(record)
            if counted:
                self._active -= 1
