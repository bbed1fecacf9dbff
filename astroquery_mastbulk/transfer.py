"""The HTTP engine: many files at once, pooled connections, retries, Range resume, atomic writes.

It knows URLs, paths and HTTP, nothing of JSON, missions or astroquery. Retries are written
here rather than left to urllib3's ``Retry``: a transfer that breaks mid-body must resume from
the bytes already on disk with a fresh Range request, which a connection-level retry cannot do.
``Retry`` still parses Retry-After for us.

Bytes go to a dot-named partial file beside the final one (``.<name>.part``), with the server's
validators (ETag, Last-Modified, total length) in ``.<name>.part.json``, so a later run resumes
only a partial of the same version of the file. The partial is locked (``flock``) while it is
written: two runs into one folder take turns per file instead of writing one file together.
"""

import base64
import hashlib
import http.client
import json
import os
import random
import stat
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.util.retry import Retry

from .errors import TransferError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs into one folder are then not coordinated
    fcntl = None

__all__ = ["EngineSettings", "Transfer", "TransferResult", "Downloader", "part_path", "meta_path",
           "COMPLETE", "SKIPPED", "ERROR"]

COMPLETE, SKIPPED, ERROR = "COMPLETE", "SKIPPED", "ERROR"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_PARSE_RETRY_AFTER = Retry(total=0).parse_retry_after
#: A body that arrives whole but fails its checksum is fetched at most this many times.
_CORRUPT_ATTEMPTS = 3
_LOCK_POLL = 0.05
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
_DRAIN_LIMIT = 1 << 16  # bytes of an unread body worth reading to keep its connection


@dataclass(frozen=True)
class EngineSettings:
    """How the engine transfers: concurrency, patience and politeness.

    Attributes
    ----------
    max_workers : int
        Files transferred at once (one pooled connection each).
    connect_timeout, read_timeout : float
        Seconds to wait for a connection, and for the server between two reads.
    retries : int
        Further attempts at one file after a transient failure.
    backoff, backoff_max : float
        First retry delay and its cap, in seconds; the delay doubles each time, with jitter.
    retry_after_max : float
        Longest Retry-After honoured, in seconds.
    chunk_size : int
        Bytes read and written at a time (memory use stays ``max_workers * chunk_size``).
    max_redirects : int
        Redirect hops followed per request.
    cache : bool
        Skip a final file whose size equals the server's Content-Length.
    fsync : bool
        Flush each file to the disk before renaming it into place, so that not even a power cut
        leaves a renamed file without its bytes. Off by default, as in curl, wget and astroquery:
        it makes a download as slow as the disk (about 1 s per GiB here), not the network; without
        it a file cut short by a crash has the wrong size, and the next run fetches it again.
    """

    max_workers: int = 8
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    chunk_size: int = 1 << 20
    max_redirects: int = 8
    cache: bool = True
    fsync: bool = False
    user_agent: str = "astroquery-mastbulk"

    def __post_init__(self):
        if int(self.max_workers) < 1:
            raise ValueError(f"max_workers must be at least 1, not {self.max_workers}")


@dataclass(frozen=True)
class Transfer:
    """One file to fetch: ``url`` into ``path``.

    ``replace_if_older_than`` (POSIX time) marks a local copy modified before it as stale: it is
    fetched again even when its size matches (the archive reprocessed the file). ``refetch``
    marks a local copy known to have been modified since it was fetched: it is fetched again
    unless another run rewrites it first.
    """

    url: str
    path: Path
    replace_if_older_than: float = None
    refetch: bool = False


@dataclass
class TransferResult:
    """What happened to one `Transfer`: status, message, bytes received, HTTP status."""

    transfer: Transfer
    status: str
    message: str = None
    bytes_received: int = 0
    size: int = None
    http_status: int = None


def part_path(path):
    """The temporary sibling that holds a file's bytes until it is complete (dot-named: hidden)."""
    path = Path(path)
    return path.with_name(f".{path.name}.part")


def meta_path(path):
    """Where the server's validators of a partial file are kept (beside it, dot-named)."""
    path = Path(path)
    return path.with_name(f".{path.name}.part.json")


class _Stopped(Exception):
    """Raised inside a worker when the run is being interrupted."""


class _Retryable(TransferError):
    """A failure worth another attempt, with an optional server-imposed wait."""

    def __init__(self, message, *, url=None, status=None, wait=None):
        super().__init__(message, url=url, status=status)
        self.wait = wait


class _Corrupt(_Retryable):
    """A whole body arrived but failed a content check; the partial has been emptied."""


class Downloader:
    """Runs transfers concurrently and reports one `TransferResult` per transfer.

    Parameters
    ----------
    settings : EngineSettings, optional
        Concurrency, timeouts, retries.
    authorize : callable, optional
        ``authorize(url) -> dict`` of extra headers for a request to ``url``; called for every
        hop of every redirect, so credentials reach only the hosts it trusts.
    progress : object, optional
        Receives ``add_total(nbytes)``, ``add_bytes(nbytes)`` and ``file_done(result)`` calls.
    on_done : callable, optional
        ``on_done(result)``, called in the worker thread as soon as each transfer ends (for
        example to record completed files); it must not raise.
    check : callable, optional
        ``check(path) -> str or None``: a content check of a whole file (such as FITS checksums).
        A message means the bytes are corrupt: a download failing it is fetched again, then
        reported as ERROR, and never renamed into place; a cached file failing it is fetched again.
    """

    def __init__(self, settings=None, *, authorize=None, progress=None, on_done=None, check=None):
        self.settings = settings or EngineSettings()
        # No truth test of ``authorize``: a TokenAuth looks its token up (the keyring) when tested.
        self._authorize = authorize if authorize is not None else (lambda url: {})
        self._progress = progress
        self._on_done = on_done
        self._check = check
        self._stop = threading.Event()
        self._local = threading.local()
        self._managers = {}  # proxy URL (None: direct) -> urllib3 pool manager
        self._routes = {}  # (scheme, host:port) -> its pool manager
        self._lock = threading.Lock()
        self._open_responses = set()

    def __repr__(self):
        return f"<Downloader max_workers={self.settings.max_workers}>"

    # -- running -------------------------------------------------------------------------------
    def download(self, transfers):
        """Fetch every transfer; return results in the same order.

        A Ctrl-C stops the workers promptly, keeps partial files for the next run (which
        resumes them) and re-raises `KeyboardInterrupt`.
        """
        transfers = list(transfers)
        if not transfers:
            return []
        workers = min(int(self.settings.max_workers), len(transfers))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mastbulk")
        try:
            futures = [executor.submit(self._run_one, transfer) for transfer in transfers]
            self._wait_all(futures)
            return [future.result() for future in futures]
        except BaseException:
            self._stop.set()
            self._close_open_responses()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            self._close_sessions()

    @staticmethod
    def _wait_all(futures):
        # A timed wait in a loop keeps the main thread responsive to Ctrl-C on every platform.
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.25)

    def _run_one(self, transfer):
        try:
            result = self._fetch(transfer)
        except _Stopped:
            result = TransferResult(transfer, ERROR, "interrupted; the partial file is kept for resuming")
        except TransferError as err:
            result = TransferResult(transfer, ERROR, str(err), http_status=err.status)
        except OSError as err:  # the file system changed under us (a file vanished, a folder moved)
            result = TransferResult(transfer, ERROR, f"{transfer.path}: {_os_reason(err)}")
        if self._on_done is not None:
            self._on_done(result)
        if self._progress is not None:
            self._progress.file_done(result)
        return result

    # -- one file ------------------------------------------------------------------------------
    def _fetch(self, transfer):
        path = Path(transfer.path)
        claim = _Claim(path, self._sleep)
        try:
            return self._with_retries(transfer, lambda: self._attempt(transfer, path, claim))
        finally:
            claim.release(keep=self._stop.is_set())  # an interrupted run keeps what it has begun

    def _with_retries(self, transfer, attempt_once):
        attempts = int(self.settings.retries) + 1
        attempt = corrupt = 0
        while True:
            try:
                return attempt_once()
            except _Retryable as err:
                attempt += 1
                corrupt += isinstance(err, _Corrupt)
                if attempt >= attempts or corrupt >= _CORRUPT_ATTEMPTS:
                    raise TransferError(f"{err} (gave up after {attempt} attempts)",
                                        url=transfer.url, status=err.status) from err
                self._sleep(self._delay(attempt - 1, err.wait))

    def _delay(self, attempt, server_wait):
        if server_wait is not None:
            return min(max(server_wait, 0.0), self.settings.retry_after_max)
        cap = min(self.settings.backoff_max, self.settings.backoff * (2 ** attempt))
        return random.uniform(cap / 2, cap)

    def _sleep(self, seconds):
        if self._stop.wait(seconds):
            raise _Stopped()

    def _attempt(self, transfer, path, claim):
        refetch = transfer.refetch
        while True:
            before = _signature(path)
            if (self.settings.cache and not refetch and before is not None
                    and not self._is_stale(transfer, path)):
                skipped = self._check_cached(transfer, path)
                if skipped is not None:
                    return skipped
            if claim.acquire() and _signature(path) != before:
                refetch = False  # another run rewrote the file while we waited for its lock: look again
                continue
            return self._get(transfer, path, claim)

    @staticmethod
    def _is_stale(transfer, path):
        limit = transfer.replace_if_older_than
        return limit is not None and path.stat().st_mtime < limit

    def _check_cached(self, transfer, path):
        if self._check is not None and self._check(path) is not None:
            return None  # corrupt on disk: fetch it again
        with self._request("HEAD", transfer.url) as response:
            if response.status_code in (405, 501):
                return None  # no HEAD here: let the GET decide
            _raise_for_status(response)
            length = response.headers.get("Content-Length")
        local = path.stat().st_size
        if length is not None and int(length) == local:
            return TransferResult(transfer, SKIPPED, "already on disk with the server's size", 0, local,
                                  response.status_code)
        return None

    def _get(self, transfer, path, claim):
        url, fd = transfer.url, claim.fd
        offset = os.fstat(fd).st_size
        saved = _read_meta(path) if offset else None
        with self._request("GET", url, _resume_headers(offset, saved)) as response:
            if response.status_code == 416 and offset:
                _truncate(fd)  # our partial is not a prefix of the server's file: start over
                raise _Retryable("server refused to resume; restarting", url=url, wait=0)
            _raise_for_status(response)
            offset, total = _resume_point(response, offset)
            found = _validators(response, total)
            if offset and saved is not None and _changed(saved, found):
                _truncate(fd)  # a server ignoring If-Range sent the rest of another version
                raise _Retryable("the file changed on the server since the partial began; restarting",
                                 url=url, wait=0)
            if found != saved and (total is None or total - offset > self.settings.chunk_size):
                # A body of one chunk is written whole or not at all: no partial of it to resume.
                _write_meta(path, found, url)
            digest = _Digest.of(response, fd, offset)
            received = self._stream(response, fd, offset, digest, path, url)
        size = offset + received
        if total is not None and size != total:
            raise _Retryable(f"short body: got {size} of {total} bytes", url=url)
        self._verify(fd, path, digest, url)
        try:
            claim.commit(fsync=self.settings.fsync)
        except OSError as err:
            _truncate(claim.fd)  # None once a Windows commit closed it
            raise TransferError(f"cannot write {path}: {_os_reason(err)}", url=url) from err
        _remove(meta_path(path))
        return TransferResult(transfer, COMPLETE, None, received, size, response.status_code)

    def _stream(self, response, fd, offset, digest, path, url):
        """Write the body into the locked partial ``fd`` from ``offset``; return the bytes received."""
        if self._progress is not None and response.headers.get("Content-Length"):
            self._progress.add_total(int(response.headers["Content-Length"]))
        received = 0
        try:
            with open(fd, "r+b", closefd=False) as out:
                out.seek(offset)
                if os.fstat(fd).st_size > offset:
                    # Only when there is something to cut: on ext4, truncating even an empty file
                    # makes its close flush the whole new file to the disk (auto_da_alloc).
                    out.truncate()
                for chunk in response.iter_content(chunk_size=self.settings.chunk_size):
                    if self._stop.is_set():
                        raise _Stopped()
                    out.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    received += len(chunk)
                    if self._progress is not None:
                        self._progress.add_bytes(len(chunk))
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError) as err:
            if self._stop.is_set():
                raise _Stopped() from err
            raise _Retryable(f"connection broken after {offset + received} bytes: {_reason(err)}",
                             url=url) from err
        except OSError as err:
            _truncate(fd)  # a write error (disk full, file too large): free the space, fail this file
            raise TransferError(f"cannot write {path}: {_os_reason(err)}", url=url) from err
        return received

    def _verify(self, fd, path, digest, url):
        """Raise `_Corrupt` (after emptying the partial) if the whole body fails a content check."""
        if digest is not None and not digest.matches():
            problem = (f"checksum mismatch: X-Checksum-Sha256 is {digest.expected}, "
                       f"the bytes received hash to {digest.hexdigest()}")
        else:
            problem = self._check(part_path(path)) if self._check is not None else None
        if problem:
            _truncate(fd)
            raise _Corrupt(problem, url=url)
    # -- HTTP ----------------------------------------------------------------------------------
    # urllib3 directly, not requests: requests adds ~2 ms of CPU per request here (environment
    # proxies, cookies, hooks), which at 8 workers on loopback costs more than the transfers, and
    # its import slows the command's start. What requests did for us is kept: proxies from the
    # environment, certifi's CA bundle (or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE).
    def _manager(self, url):
        """The pool manager for ``url``: direct, or through the proxy the environment names for it."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        manager = self._routes.get(origin)  # the environment is read once per host, not per request
        if manager is None:
            proxy = _proxy_for(parts)
            with self._lock:
                manager = self._managers.get(proxy)
                if manager is None:
                    options = {"num_pools": 16, "maxsize": int(self.settings.max_workers), "block": False,
                               "retries": False, "ca_certs": _ca_bundle()}
                    manager = (urllib3.ProxyManager(proxy, **options) if proxy
                               else urllib3.PoolManager(**options))
                    self._managers[proxy] = manager
                self._routes[origin] = manager
        return manager

    def _request(self, method, url, headers=None):
        """Send one request, following redirects ourselves so every hop gets only its own headers."""
        timeout = urllib3.Timeout(connect=self.settings.connect_timeout, read=self.settings.read_timeout)
        for _hop in range(self.settings.max_redirects + 1):
            hop_headers = {"User-Agent": self.settings.user_agent, "X-Mastbulk-Pid": str(os.getpid()),
                           **(headers or {}), **self._authorize(url)}  # per request: nothing shared
            if self._stop.is_set():
                raise _Stopped()
            try:
                raw = self._manager(url).urlopen(method, url, headers=hop_headers, redirect=False,
                                                 retries=False, preload_content=False, decode_content=False,
                                                 timeout=timeout)
            except _TRANSPORT_ERRORS as err:
                raise _Retryable(f"{_reason(err)}", url=url) from err
            response = _Response(raw, url, self._stop)
            if not response.is_redirect:
                return _Tracked(response, self)
            location = response.headers.get("Location", "")
            response.close()
            url = urljoin(url, location)
        raise TransferError(f"more than {self.settings.max_redirects} redirects", url=url)

    def _close_open_responses(self):
        with self._lock:
            responses = list(self._open_responses)
        for response in responses:
            response.close()

    def _close_sessions(self):
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

    def iter_content(self, chunk_size):
        """The body as it arrives, undecoded (Range offsets count the bytes as sent)."""
        return self.raw.stream(chunk_size, decode_content=False)

    def close(self):
        """Done with the response: a short unread rest (error page, redirect) is read so the
        connection is kept alive; a long one, or any after a stop, closes the connection."""
        remaining = self.raw.length_remaining
        if remaining is not None and remaining <= _DRAIN_LIMIT and not self._stop.is_set():
            self.raw.drain_conn()  # back to the pool once read
        self.raw.close()


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


class _Tracked:
    """Context manager over a streamed response, known to the engine so Ctrl-C can close it."""

    def __init__(self, response, engine):
        self.response = response
        self._engine = engine

    def __enter__(self):
        with self._engine._lock:
            self._engine._open_responses.add(self.response)
        return self.response

    def __exit__(self, *exc):
        with self._engine._lock:
            self._engine._open_responses.discard(self.response)
        self.response.close()
        return False


class _Claim:
    """This process's exclusive right to write one file's partial: ``flock`` on the partial itself.

    Locking the partial rather than a separate lock file leaves nothing behind, and the kernel
    drops the lock when its process dies, so a run killed with SIGKILL never blocks the next.
    Whoever renames or removes a partial does so while holding its lock; a waiter that then gets
    the lock on the old inode notices, and opens whatever now sits at the partial's path.
    """

    def __init__(self, path, sleep):
        self.path = Path(path)
        self.part = part_path(path)
        self.fd = None
        self._sleep = sleep

    def acquire(self):
        """Open and lock the partial, waiting while another run holds it; True if newly acquired."""
        if self.fd is not None:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TransferError(f"cannot create {self.path.parent}: {_os_reason(err)}") from err
        while self.fd is None:
            try:
                fd = os.open(self.part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
            except OSError as err:
                raise TransferError(f"cannot write {self.path}: {_os_reason(err)}") from err
            try:
                self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.part):
                self.fd = fd
            else:
                os.close(fd)
        return True

    def commit(self, fsync=True):
        """Rename the complete partial into place, its bytes on disk first if ``fsync``."""
        if fsync:
            os.fsync(self.fd)
        if fcntl is None:  # Windows renames no open file; without flock, the handle guards nothing
            os.close(self.fd)
            self.fd = None
        os.replace(self.part, self.path)

    def _lock(self, fd):
        # Polled rather than blocking, so Ctrl-C (which sets the engine's stop event) stays prompt.
        while fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                self._sleep(_LOCK_POLL)

    def release(self, keep=False):
        """Unlock; unless ``keep``, an empty partial (nothing to resume) is removed first, with its
        validators."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if not keep and _same_file(fd, self.part) and os.fstat(fd).st_size == 0:
                _remove(self.part)
                _remove(meta_path(self.path))
        finally:
            os.close(fd)


class _Digest:
    """SHA-256 of a whole file, fed with the partial already on disk, then with the body."""

    def __init__(self, expected):
        self.expected = expected.strip()
        self._sha = hashlib.sha256()

    @classmethod
    def of(cls, response, fd, offset):
        """The digest to check if the response carries ``X-Checksum-Sha256``, else None."""
        expected = response.headers.get("X-Checksum-Sha256")
        if not expected:
            return None
        digest = cls(expected)
        with open(fd, "rb", closefd=False) as existing:
            existing.seek(0)
            remaining = offset
            while remaining > 0:
                block = existing.read(min(remaining, 1 << 20))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
        return digest

    def update(self, data):
        self._sha.update(data)

    def hexdigest(self):
        return self._sha.hexdigest()

    def matches(self):
        # Hex is what MAST-like servers send; base64 is the other common spelling of a digest.
        raw = self._sha.digest()
        return self.expected.lower() == raw.hex() or self.expected == base64.b64encode(raw).decode()


def _raise_for_status(response):
    status = response.status_code
    if status < 400:
        return
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status in _RETRY_STATUS:
        raise _Retryable(reason, url=response.url, status=status,
                         wait=_retry_after(response.headers.get("Retry-After")))
    raise TransferError(reason, url=response.url, status=status)


def _retry_after(value):
    if not value:
        return None
    try:
        return _PARSE_RETRY_AFTER(value)
    except Exception:  # an unparsable Retry-After is the server's bug: fall back to our backoff
        return None


def _resume_point(response, offset):
    """Where the body starts in the file, and the file's total size (None if unknown)."""
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        try:
            span, total = content_range.split(" ", 1)[1].split("/")
            start = int(span.split("-")[0])
        except (IndexError, ValueError):
            raise _Retryable(f"bad Content-Range {content_range!r}", url=response.url, wait=0) from None
        if start != offset:
            raise _Retryable(f"server resumed at {start}, not {offset}", url=response.url, wait=0)
        return offset, (None if total == "*" else int(total))
    length = response.headers.get("Content-Length")
    return 0, (int(length) if length is not None else None)


def _reason(err):
    # Tokens travel in headers only, so the text of a transport error is safe to show.
    return f"{type(err).__name__}: {err}"


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _os_reason(err):
    return err.strerror or str(err)


def _truncate(fd):
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass  # the partial is then resumed or restarted by the next attempt; nothing more to do


def _signature(path):
    """Identity and state of a regular file (inode, size, mtime), or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _same_file(fd, path):
    try:
        on_path = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (on_path.st_dev, on_path.st_ino) == (held.st_dev, held.st_ino)


def _validators(response, total):
    """What identifies the version of the file being received."""
    return {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified"),
            "total": total}


def _changed(saved, found):
    return any(saved.get(key) is not None and found.get(key) is not None and saved[key] != found[key]
               for key in ("etag", "last_modified", "total"))


def _resume_headers(offset, saved):
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    etag = (saved or {}).get("etag")
    # If-Range makes a server that sees another version answer 200 with the whole new file.
    validator = etag if etag and not etag.startswith("W/") else (saved or {}).get("last_modified")
    if validator:
        headers["If-Range"] = validator
    return headers


def _read_meta(path):
    try:
        saved = json.loads(meta_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no (readable) validators: the partial is resumed on length alone
    return saved if isinstance(saved, dict) else None


def _write_meta(path, found, url):
    try:
        meta_path(path).write_text(json.dumps(found), encoding="utf-8")
    except OSError as err:
        raise TransferError(f"cannot write {path}: {_os_reason(err)}", url=url) from err
