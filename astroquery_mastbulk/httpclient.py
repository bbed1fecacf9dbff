"""HTTP requests for the engine: routes (direct or by proxy), redirects, credentials, statuses.

Not requests: requests adds ~2 ms of CPU per request here (environment proxies, cookies, hooks),
which at 8 workers on loopback costs more than the transfers, and its import slows the command's
start. What requests did for us is kept: proxies from the environment, certifi's CA bundle (or
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE). Connections are kept in `~astroquery_mastbulk.pools`;
retrying is the engine's (`~astroquery_mastbulk.transfer`), which resumes from the disk.

Every connection the client opens is known to it, so that `HttpClient.interrupt` can shut their
sockets down: a worker blocked in a read (a server slow to send headers or body) wakes at once,
instead of after the read timeout.
"""

import email.utils
import http.client
import os
import ssl
import sys
import threading
import time
from urllib.parse import urljoin, urlsplit

from .errors import TransferError
from .pools import BodyError, Connections, DirectPool, ProxyRoute, is_redirect, reason

__all__ = ["HttpClient", "Stopped", "Retryable", "BODY_ERRORS", "raise_for_status", "resume_point", "reason"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})
_TRANSPORT_ERRORS = (http.client.HTTPException, OSError)
#: What reading a body raises when its connection breaks.
BODY_ERRORS = (BodyError,)


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
        self._base_headers = {"User-Agent": settings.user_agent, "X-Mastbulk-Pid": str(os.getpid())}
        self._routes = {}  # (scheme, host:port) -> its DirectPool, or the ProxyRoute it goes through
        self._proxies = {}  # proxy URL -> ProxyRoute
        self._tls = None
        self._lock = threading.Lock()
        self._connections = Connections()

    def _route(self, url):
        """``(opener, target)``: what sends a request for ``url``, and the path or URL to give it."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        route = self._routes.get(origin)  # the environment is read once per host, not per request
        if route is None:
            with self._lock:
                route = self._routes.get(origin) or self._new_route(parts)
                self._routes[origin] = route
        if isinstance(route, ProxyRoute):  # a proxy needs the whole URL
            return route, url
        return route, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _new_route(self, parts):
        size = int(self.settings.max_workers)
        proxy = _proxy_for(parts)
        if proxy:
            if proxy not in self._proxies:
                self._proxies[proxy] = ProxyRoute(proxy, size, self.settings, self._connections, _ca_bundle())
            return self._proxies[proxy]
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransferError(f"cannot download from {parts.geturl()!r}: not an http(s) URL")
        if parts.scheme == "https" and self._tls is None:
            self._tls = ssl.create_default_context(cafile=_ca_bundle())
        return DirectPool(parts.scheme, parts.hostname, parts.port, size, self.settings, self._connections,
                          self._stop, self._tls if parts.scheme == "https" else None)

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
            raw = opener.urlopen(method, target, headers)
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
            routes, self._routes, self._proxies = set(self._routes.values()), {}, {}
        for route in routes:
            route.close()


class _Response:
    """A streamed response, read through the names of ``requests.Response`` the engine uses."""

    def __init__(self, raw, url, stop):
        self.raw, self.url, self._stop = raw, url, stop

    status_code = property(lambda self: self.raw.status)
    headers = property(lambda self: self.raw.headers)
    reason = property(lambda self: self.raw.reason)
    is_redirect = property(lambda self: is_redirect(self.raw))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def iter_content(self, chunk_size):
        """The body as it arrives, undecoded (Range offsets count the bytes as sent)."""
        return self.raw.stream(chunk_size)

    def close(self):
        """Done with the response: a short unread rest (error page, redirect) is read so the
        connection is kept alive; a long one, or any after a stop, closes the connection."""
        self.raw.release(drain=not self._stop.is_set())


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
    if _no_proxy_variables():
        return None
    import urllib.request  # getproxies and proxy_bypass: the same rules requests follows
    proxies = urllib.request.getproxies()
    if not proxies:
        return None
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _no_proxy_variables():
    """True where proxies come only from the environment (not macOS, not Windows) and none is set:
    then there is no need to import urllib.request (5 ms of start-up) to learn it."""
    if sys.platform in ("darwin", "win32"):  # their system settings count too
        return False
    return not any(name.lower().endswith("_proxy") and value for name, value in os.environ.items())


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
    """Seconds to wait from a Retry-After value (seconds, or an HTTP date); None if unusable."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # an unparsable Retry-After is the server's bug: use our backoff
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo else None


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
