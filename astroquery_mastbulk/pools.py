"""Keep-alive connections for the engine's HTTP client: at most N per origin, each one cuttable.

Direct routes (the usual case) use the standard library's ``http.client`` through `DirectPool`,
written here because it is the engine's hot path: urllib3's pool manager cost about 0.3 ms of CPU
per request and 50 ms of import on top of ``http.client`` (it parses the URL again, looks the pool
up, wraps the response), and the engine follows redirects, retries and resumes by itself anyway.
Routes through a proxy use urllib3's ``ProxyManager`` (CONNECT tunnels, proxy authentication),
imported only then.

Every connection registers in a `Connections` registry once connected, so that an interrupt can
shut its socket down: a thread blocked reading it wakes at once.
"""

import http.client
import queue
import socket
import threading
import weakref

__all__ = ["TransportError", "BodyError", "Connections", "DirectPool", "ProxyRoute", "Headers", "DRAIN_LIMIT",
           "reason"]

#: Bytes of an unread body worth reading to keep its connection.
DRAIN_LIMIT = 1 << 16
_SLOT_POLL = 0.25  # seconds between looks at the stop event while waiting for a free connection
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def reason(err):
    """The text of a transport error, its type first (once: a `TransportError` names its cause's)."""
    # Tokens travel in headers only, so the text of a transport error is safe to show.
    if isinstance(err, TransportError):
        return str(err)
    return f"{type(err).__name__}: {err}"


class TransportError(ConnectionError):
    """A transport failure translated here, whose text is the `reason` of the error it replaces."""


class BodyError(TransportError):
    """Reading a response body failed: the connection broke, or went silent past the timeout."""


class Connections:
    """The connections of one client, so that an interrupt can shut their sockets down.

    Closing a socket does not wake a thread blocked reading it; ``shutdown`` does (the read returns
    end-of-file), from any thread. The set is weak: connections dropped by their pools fall out.
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
    """Mixin for connections: separate connect and read timeouts, and registration once connected."""

    connections = None  # a Connections, set per client on the classes `_connection_classes` makes
    read_timeout = None

    def connect(self):
        super().connect()
        if self.read_timeout is not None:
            self.sock.settimeout(self.read_timeout)
        self.connections.add(self)


def _connection_classes(bases, connections, read_timeout):
    """Subclasses of ``bases`` (by scheme) that register in ``connections`` and use ``read_timeout``."""
    return {scheme: type(base.__name__, (_Registered, base),
                         {"connections": connections, "read_timeout": read_timeout})
            for scheme, base in bases.items()}


class DirectPool:
    """Keep-alive ``http.client`` connections to one origin, at most ``size`` in use at once.

    A worker asking for a connection while all are in use waits for one (checking ``stop``), so
    the engine may run more workers than connections.

    Parameters
    ----------
    scheme, host, port : str, str, int
        The origin.
    size : int
        Connections in use at once, at most.
    settings : `~astroquery_mastbulk.transfer.EngineSettings`
        Its ``connect_timeout`` and ``read_timeout`` are used.
    connections : Connections
        Where each connection registers once connected.
    stop : threading.Event
        Set when the run is interrupted.
    tls : ssl.SSLContext, optional
        For ``https``.
    """

    def __init__(self, scheme, host, port, size, settings, connections, stop, tls=None):
        bases = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}
        base = _connection_classes({scheme: bases[scheme]}, connections, settings.read_timeout)[scheme]
        options = {"context": tls} if scheme == "https" else {}
        self._new = lambda: base(host, port, timeout=settings.connect_timeout, **options)
        # One queue of the pool's places: an idle connection, or None for one not made yet. A
        # SimpleQueue (written in C) takes and gives back a place in one lock operation, where a
        # Semaphore with a list under a Lock took a dozen, for every file, with 16 threads waiting.
        self._places = queue.SimpleQueue()
        for _ in range(size):
            self._places.put(None)
        self._stop = stop

    def urlopen(self, method, target, headers):
        """Send a request; return a `DirectResponse`, which gives the connection back when closed."""
        connection = self._take_place()
        try:
            if connection is not None:
                try:
                    return self._send(connection, method, target, headers)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    connection.close()  # a kept-alive connection the server had closed: once more, anew
            return self._send(self._new(), method, target, headers)
        except BaseException:
            self._places.put(None)
            raise

    def _take_place(self):
        while True:
            try:
                return self._places.get(timeout=_SLOT_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise http.client.HTTPException("interrupted while waiting for a connection") from None

    def _send(self, connection, method, target, headers):
        try:
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        return DirectResponse(response, lambda reusable: self._give_back(connection, reusable))

    def _give_back(self, connection, reusable):
        if not reusable:
            connection.close()
        self._places.put(connection if reusable else None)

    def close(self):
        """Close the idle connections."""
        while True:
            try:
                connection = self._places.get_nowait()
            except queue.Empty:
                return
            if connection is not None:
                connection.close()


class Headers(dict):
    """Response headers by lower-cased name, looked up in any case; the first of repeated ones wins.

    Built once per response: every lookup in ``http.client``'s message object scans and lower-cases
    all the headers again, and the engine makes about ten per file.
    """

    def __init__(self, items):
        super().__init__(reversed([(name.lower(), value) for name, value in items]))

    def get(self, name, default=None):
        return super().get(name.lower(), default)

    def __getitem__(self, name):
        return super().__getitem__(name.lower())

    def __contains__(self, name):
        return super().__contains__(name.lower())


class DirectResponse:
    """An ``http.client`` response, read through the names of ``requests.Response`` the engine uses."""

    def __init__(self, raw, give_back):
        self.raw, self._give_back = raw, give_back
        self.headers = Headers(raw.headers.items())

    status = property(lambda self: self.raw.status)
    reason = property(lambda self: self.raw.reason)

    def stream(self, chunk_size):
        """The body as it arrives; `BodyError` if the connection breaks or times out."""
        read = self.raw.read
        while True:
            try:
                block = read(chunk_size)
            except (OSError, http.client.HTTPException) as err:
                raise BodyError(reason(err)) from err
            if not block:
                return
            yield block

    def release(self, drain):
        """Give the connection back: whole if the body was read (or, with ``drain``, a short rest
        of it can be), else closed."""
        if self._give_back is None:
            return
        give_back, self._give_back = self._give_back, None
        raw = self.raw
        if not raw.isclosed() and drain and raw.length is not None and raw.length <= DRAIN_LIMIT:
            try:
                raw.read()
            except (OSError, http.client.HTTPException):
                pass
        whole = raw.isclosed()
        raw.close()
        give_back(whole)


class ProxyRoute:
    """Requests through a proxy, by urllib3's ``ProxyManager`` (imported only when one is used).

    Parameters
    ----------
    proxy : str
        The proxy's URL.
    size : int
        Connections per origin, at most (the manager's pools block beyond it).
    settings : `~astroquery_mastbulk.transfer.EngineSettings`
    connections : Connections
    ca_bundle : str or None
    """

    def __init__(self, proxy, size, settings, connections, ca_bundle):
        import urllib3
        self._urllib3 = urllib3
        self._timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        self._manager = urllib3.ProxyManager(proxy, num_pools=16, maxsize=size, block=True, retries=False,
                                             ca_certs=ca_bundle)
        pools = urllib3.poolmanager.pool_classes_by_scheme
        registered = _connection_classes({scheme: pool.ConnectionCls for scheme, pool in pools.items()},
                                         connections, None)  # urllib3 applies its own timeouts
        self._manager.pool_classes_by_scheme = {
            scheme: type(pool.__name__, (pool,), {"ConnectionCls": registered[scheme]})
            for scheme, pool in pools.items()}

    def urlopen(self, method, url, headers):
        """Send a request through the proxy; return a `ProxiedResponse`."""
        try:
            raw = self._manager.urlopen(method, url, headers=headers, redirect=False, retries=False,
                                        preload_content=False, decode_content=False, timeout=self._timeout)
        except self._urllib3.exceptions.HTTPError as err:
            raise TransportError(reason(err)) from err
        return ProxiedResponse(raw, self._urllib3.exceptions.HTTPError)

    def close(self):
        """Close every pooled connection."""
        self._manager.clear()


class ProxiedResponse:
    """A streamed urllib3 response, with the interface of `DirectResponse`."""

    def __init__(self, raw, errors):
        self.raw, self._errors = raw, errors

    status = property(lambda self: self.raw.status)
    headers = property(lambda self: self.raw.headers)
    reason = property(lambda self: self.raw.reason)

    def stream(self, chunk_size):
        """The body as it arrives, undecoded; `BodyError` if the connection breaks or times out."""
        try:
            yield from self.raw.stream(chunk_size, decode_content=False)
        except (self._errors, OSError, http.client.HTTPException) as err:
            raise BodyError(reason(err)) from err

    def release(self, drain):
        """As `DirectResponse.release`."""
        remaining = self.raw.length_remaining
        if drain and remaining is not None and remaining <= DRAIN_LIMIT:
            self.raw.drain_conn()  # back to the pool once read
        self.raw.close()  # closes the connection, unless it went back to the pool whole
        # The pool blocks when every slot is taken: give the slot back even for a closed connection.
        self.raw.release_conn()


def is_redirect(response):
    """Whether ``response`` (either kind) is a redirect with somewhere to go."""
    return response.status in _REDIRECTS and "Location" in response.headers
