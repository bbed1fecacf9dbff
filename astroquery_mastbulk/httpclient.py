"""HTTP requests for the engine: pooled connections, proxies, redirects, statuses.

urllib3 directly, not requests: requests adds ~2 ms of CPU per request here (environment proxies,
cookies, hooks), which at 8 workers on loopback costs more than the transfers, and its import
slows the command's start. What requests did for us is kept: proxies from the environment,
certifi's CA bundle (or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE). ``Retry`` parses Retry-After for us;
retrying itself is the engine's (`~astroquery_mastbulk.transfer`), which resumes from the disk.

Every connection the client opens is known to it, so that `HttpClient.interrupt` can shut their
sockets down: a worker blocked in a read (a server slow to send headers or body) wakes at once,
instead of after the read timeout.
"""

import http.client
import os
import socket
import ssl
import threading
import weakref
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.util.retry import Retry

from .errors import TransferError

__all__ = ["HttpClient", "Stopped", "Retryable", "BODY_ERRORS", "raise_for_status", "resume_point", "reason"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})
_PARSE_RETRY_AFTER = Retry(total=0).parse_retry_after
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
#: What reading a body raises when its connection breaks.
BODY_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError)
_DRAIN_LIMIT = 1 << 16  # bytes of an unread body worth reading to keep its connection


class Stopped(Exception):
    """Raised inside a worker when the run is being interrupted."""


class Retryable(TransferError):
    """A failure worth another attempt, with an optional server-imposed wait."""

    def __init__(self, message, *, url=None, status=None, wait=None):
        super().__init__(message, url=url, status=status)
        self.wait = wait


class HttpClient:
    """Sends the engine's requests through one pool of connections per proxy.

    Parameters
    ----------
    settings : `~astroquery_mastbulk.transfer.EngineSettings`
        Its ``max_workers`` (connections kept per host), timeouts, ``max_redirects`` and
        ``user_agent`` are used.
    authorize : callable
        ``authorize(url) -> dict`` of extra headers, called for every hop of every redirect.
    stop : threading.Event
        Set when the run is interrupted: no request is sent once it is set.
    """

    def __init__(self, settings, authorize, stop):
        self.settings = settings
        self._authorize = authorize
        self._stop = stop
        # Built once: the settings are frozen, and urllib3 copies a Timeout per request anyway.
        self._timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        self._base_headers = {"User-Agent": settings.user_agent, "X-Mastbulk-Pid": str(os.getpid())}
        self._managers = {}  # proxy URL (None: direct) -> urllib3 pool manager
        self._routes = {}  # (scheme, host:port) -> its connection pool, or its proxy's pool manager
        self._lock = threading.Lock()
        self._connections = _Connections()
        self._pool_classes = _pool_classes(self._connections)

    def _route(self, url):
        """``(opener, target)``: what sends a request for ``url``, and the URL or path to give it.

        Direct routes go straight to the host's connection pool with the URL's path: the pool
        manager would parse the URL and look the pool up again for every request.
        """
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        route = self._routes.get(origin)  # the environment is read once per host, not per request
        if route is None:
            proxy = _proxy_for(parts)
            with self._lock:
                manager = self._managers.get(proxy)
                if manager is None:
                    # Blocking pools of max_workers connections per host: the engine runs more
                    # workers than that, and the extra ones wait here for a free connection.
                    options = {"num_pools": 16, "maxsize": int(self.settings.max_workers), "block": True,
                               "retries": False, "ca_certs": _ca_bundle()}
                    manager = (urllib3.ProxyManager(proxy, **options) if proxy
                               else urllib3.PoolManager(**options))
                    manager.pool_classes_by_scheme = self._pool_classes
                    self._managers[proxy] = manager
                route = self._routes[origin] = manager if proxy else manager.connection_from_url(url)
        if isinstance(route, urllib3.PoolManager):  # through a proxy: it needs the whole URL
            return route, url
        return route, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def request(self, method, url, headers=None, *, anonymous=False):
        """Send one request, following redirects ourselves so every hop gets only its own headers.

        Parameters
        ----------
        method : str
            ``"GET"`` or ``"HEAD"``.
        url : str
            Where to send it.
        headers : dict, optional
            Extra headers of this request (such as Range); the shared pools never hold any.
        anonymous : bool, optional
            Ask each hop without credentials first, and again with them (if ``authorize`` gives
            any) only when it answers 401 or 403.

        Returns
        -------
        response
            The streamed response, a context manager that closes it.

        Raises
        ------
        Stopped
            Once the stop event is set.
        Retryable
            On a transport error.
        TransferError
            On more than ``max_redirects`` redirects.
        """
        for _hop in range(self.settings.max_redirects + 1):
            hop_headers = {**self._base_headers, **(headers or {})}  # per request: nothing shared
            credentials = {} if anonymous else self._authorize(url)
            response = self._send(method, url, {**hop_headers, **credentials})
            if anonymous and response.status_code in _AUTH_STATUSES:
                credentials = self._authorize(url)  # only now: a public file never opens the keyring
                if credentials:
                    response.close()
                    response = self._send(method, url, {**hop_headers, **credentials})
            if not response.is_redirect:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = urljoin(url, location)
        raise TransferError(f"more than {self.settings.max_redirects} redirects", url=url)

    def _send(self, method, url, headers):
        if self._stop.is_set():
            raise Stopped()
        try:
            opener, target = self._route(url)
            raw = opener.urlopen(method, target, headers=headers, redirect=False, retries=False,
                                 preload_content=False, decode_content=False, timeout=self._timeout)
        except _TRANSPORT_ERRORS as err:
            if self._stop.is_set():  # our own interrupt cut the connection
                raise Stopped() from err
            if _certificate_failure(err):  # as curl: the server will not become trustworthy by retrying
                raise TransferError(f"{reason(err)}; if your site inspects HTTPS, set REQUESTS_CA_BUNDLE "
                                    "to its CA bundle", url=url) from err
            raise Retryable(reason(err), url=url) from err
        return _Response(raw, url, self._stop)

    def interrupt(self):
        """Cut every connection, and any opened from now on: reads blocked on them return at once.

        Called with the stop event set; the workers reading then see it and stop. Only a connection
        still being established (at most ``connect_timeout``) is cut when it is made.
        """
        self._connections.cut()

    def close(self):
        """Close every pooled connection."""
        with self._lock:
            managers, self._managers, self._routes = list(self._managers.values()), {}, {}
        for manager in managers:
            manager.clear()


class _Response:
    """A streamed urllib3 response, read through the names of ``requests.Response`` the engine uses."""

    def __init__(self, raw, url, stop):
        self.raw, self.url, self._stop = raw, url, stop

    status_code = property(lambda self: self.raw.status)
    headers = property(lambda self: self.raw.headers)
    reason = property(lambda self: self.raw.reason)

    @property
    def is_redirect(self):
        return self.raw.status in (301, 302, 303, 307, 308) and "Location" in self.raw.headers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def iter_content(self, chunk_size):
        """The body as it arrives, undecoded (Range offsets count the bytes as sent)."""
        return self.raw.stream(chunk_size, decode_content=False)

    def close(self):
        """Done with the response: a short unread rest (error page, redirect) is read so the
        connection is kept alive; a long one, or any after a stop, closes the connection."""
        remaining = self.raw.length_remaining
        if remaining is not None and remaining <= _DRAIN_LIMIT and not self._stop.is_set():
            self.raw.drain_conn()  # back to the pool once read
        self.raw.close()  # closes the connection, unless it went back to the pool whole
        # Give the pool its slot back even for a closed connection (the next request reconnects):
        # the pool blocks when every slot is taken, so a slot never returned would be lost.
        self.raw.release_conn()


class _Connections:
    """The connections of one client, so that an interrupt can shut their sockets down.

    Closing a socket does not wake a thread blocked reading it; ``shutdown`` does (the read returns
    end-of-file), from any thread. The set is weak: connections the pools discard just drop out.
    """

    def __init__(self):
        self._live = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cut = False

    def add(self, connection):
        """Called by a connection once connected; cut at once if the client is interrupted."""
        with self._lock:
            if not self._cut:
                self._live.add(connection)
                return
        _shut(connection)

    def cut(self):
        """Shut down every live connection, and from now on every new one."""
        with self._lock:
            self._cut = True
            live = list(self._live)
        for connection in live:
            _shut(connection)


def _shut(connection):
    sock = connection.sock
    if sock is None:
        return
    try:
        # socket.socket's own shutdown, not SSLSocket's, which would also drop its TLS state
        # under the feet of the thread reading it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Registered:
    """Mixin for urllib3 connections: once connected, join the client's `_Connections`."""

    connections = None  # set on the subclasses made by `_pool_classes`

    def connect(self):
        super().connect()
        self.connections.add(self)


def _pool_classes(connections):
    """urllib3 pool classes by scheme whose connections register in ``connections``.

    urllib3 has no hook for the connections a pool manager makes, but takes its pool classes,
    which name their connection class: subclasses of both, per client, carry the registry.
    """
    classes = {}
    for scheme, pool in urllib3.poolmanager.pool_classes_by_scheme.items():
        connection = type(pool.ConnectionCls.__name__, (_Registered, pool.ConnectionCls),
                          {"connections": connections})
        classes[scheme] = type(pool.__name__, (pool,), {"ConnectionCls": connection})
    return classes


def _certificate_failure(err):
    """Whether ``err`` (urllib3 wraps the ssl module's errors) is a failed certificate check."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        seen.add(id(err))
        wrapped = err.args[0] if err.args and isinstance(err.args[0], BaseException) else None
        err = wrapped or err.__cause__ or err.__context__
    return False


def _proxy_for(parts):
    """The proxy URL the environment names for the split URL ``parts`` (as requests reads it), or None."""
    import urllib.request  # getproxies and proxy_bypass: the same rules requests follows
    proxies = urllib.request.getproxies()
    if not proxies:
        return None
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _ca_bundle():
    """The CA certificates requests would use: its environment variables, else certifi's bundle."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import certifi
    except ImportError:
        return None  # the system's default certificates
    return certifi.where()


# -- statuses -------------------------------------------------------------------------------------
def raise_for_status(response):
    """Raise `Retryable` for a transient error status (with its Retry-After), `TransferError` for
    any other error status; return for a success."""
    status = response.status_code
    if status < 400:
        return
    text = f"HTTP {status} {response.reason or ''}".strip()
    if status in _RETRY_STATUS:
        raise Retryable(text, url=response.url, status=status,
                        wait=_retry_after(response.headers.get("Retry-After")))
    raise TransferError(text, url=response.url, status=status)


def _retry_after(value):
    if not value:
        return None
    try:
        return _PARSE_RETRY_AFTER(value)
    except Exception:  # an unparsable Retry-After is the server's bug: fall back to our backoff
        return None


def resume_point(response, offset):
    """Where the body starts in the file, and the file's total size (None if unknown)."""
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        try:
            span, total = content_range.split(" ", 1)[1].split("/")
            start = int(span.split("-")[0])
        except (IndexError, ValueError):
            raise Retryable(f"bad Content-Range {content_range!r}", url=response.url, wait=0) from None
        if start != offset:
            raise Retryable(f"server resumed at {start}, not {offset}", url=response.url, wait=0)
        return offset, (None if total == "*" else int(total))
    length = response.headers.get("Content-Length")
    return 0, (int(length) if length is not None else None)


def reason(err):
    """The text of a transport error, its type first."""
    # Tokens travel in headers only, so the text of a transport error is safe to show.
    return f"{type(err).__name__}: {err}"
