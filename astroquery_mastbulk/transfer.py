"""The HTTP engine: many files at once, pooled connections, retries, Range resume, atomic writes.

It knows URLs, paths and HTTP, nothing of JSON, missions or astroquery. Retries are written
here rather than left to urllib3's ``Retry``: a transfer that breaks mid-body must resume from
the bytes already on disk with a fresh Range request, which a connection-level retry cannot do.
``Retry`` still parses Retry-After for us.
"""

import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests
from urllib3.util.retry import Retry

from .errors import TransferError

__all__ = ["EngineSettings", "Transfer", "TransferResult", "Downloader", "part_path",
           "COMPLETE", "SKIPPED", "ERROR"]

COMPLETE, SKIPPED, ERROR = "COMPLETE", "SKIPPED", "ERROR"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_PARSE_RETRY_AFTER = Retry(total=0).parse_retry_after


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
    user_agent: str = "astroquery-mastbulk"

    def __post_init__(self):
        if int(self.max_workers) < 1:
            raise ValueError(f"max_workers must be at least 1, not {self.max_workers}")


@dataclass(frozen=True)
class Transfer:
    """One file to fetch: ``url`` into ``path``.

    ``replace_if_older_than`` (POSIX time) marks a local copy modified before it as stale: it is
    fetched again even when its size matches (the archive reprocessed the file).
    """

    url: str
    path: Path
    replace_if_older_than: float = None


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


class _Stopped(Exception):
    """Raised inside a worker when the run is being interrupted."""


class _Retryable(TransferError):
    """A failure worth another attempt, with an optional server-imposed wait."""

    def __init__(self, message, *, url=None, status=None, wait=None):
        super().__init__(message, url=url, status=status)
        self.wait = wait


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
    """

    def __init__(self, settings=None, *, authorize=None, progress=None):
        self.settings = settings or EngineSettings()
        self._authorize = authorize or (lambda url: {})
        self._progress = progress
        self._stop = threading.Event()
        self._local = threading.local()
        self._sessions = []
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
        if self._progress is not None:
            self._progress.file_done(result)
        return result

    # -- one file ------------------------------------------------------------------------------
    def _fetch(self, transfer):
        attempts = int(self.settings.retries) + 1
        attempt = 0
        while True:
            try:
                return self._attempt(transfer)
            except _Retryable as err:
                attempt += 1
                if attempt >= attempts:
                    raise TransferError(f"{err} (gave up after {attempts} attempts)",
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

    def _attempt(self, transfer):
        path = Path(transfer.path)
        if self.settings.cache and path.is_file() and not self._is_stale(transfer, path):
            skipped = self._check_cached(transfer, path)
            if skipped is not None:
                return skipped
        return self._get(transfer, path)

    @staticmethod
    def _is_stale(transfer, path):
        limit = transfer.replace_if_older_than
        return limit is not None and path.stat().st_mtime < limit

    def _check_cached(self, transfer, path):
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

    def _get(self, transfer, path):
        part = part_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TransferError(f"cannot create {path.parent}: {err.strerror or err}", url=transfer.url) from err
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._request("GET", transfer.url, headers) as response:
            if response.status_code == 416 and offset:
                _remove(part)  # our partial is not a prefix of the server's file: start over
                raise _Retryable("server refused to resume; restarting", url=transfer.url, wait=0)
            _raise_for_status(response)
            offset, total = _resume_point(response, offset)
            received = self._stream(response, path, offset, transfer.url)
        size = offset + received
        if total is not None and size != total:
            raise _Retryable(f"short body: got {size} of {total} bytes", url=transfer.url)
        try:
            os.replace(part, path)
        except OSError as err:
            raise TransferError(f"cannot write {path}: {err.strerror or err}", url=transfer.url) from err
        return TransferResult(transfer, COMPLETE, None, received, size, response.status_code)

    def _stream(self, response, path, offset, url):
        """Append the body to the partial file of ``path`` from ``offset``; return the bytes received."""
        part = part_path(path)
        if self._progress is not None and response.headers.get("Content-Length"):
            self._progress.add_total(int(response.headers["Content-Length"]))
        received = 0
        try:
            with open(part, "r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                for chunk in response.iter_content(chunk_size=self.settings.chunk_size):
                    if self._stop.is_set():
                        raise _Stopped()
                    out.write(chunk)
                    received += len(chunk)
                    if self._progress is not None:
                        self._progress.add_bytes(len(chunk))
        except (requests.RequestException, ConnectionError) as err:
            if self._stop.is_set():
                raise _Stopped() from err
            raise _Retryable(f"connection broken after {offset + received} bytes: {_reason(err)}",
                             url=url) from err
        except OSError as err:
            _remove(part)  # a write error (disk full, permissions): free the space, fail this file
            raise TransferError(f"cannot write {path}: {err.strerror or err}", url=url) from err
        return received

    # -- HTTP ----------------------------------------------------------------------------------
    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.settings.user_agent
            session.headers["X-Mastbulk-Pid"] = str(os.getpid())
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _request(self, method, url, headers=None):
        """Send one request, following redirects ourselves so every hop gets only its own headers."""
        session = self._session()
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for _hop in range(self.settings.max_redirects + 1):
            hop_headers = {**(headers or {}), **self._authorize(url)}  # per request: never on the session
            if self._stop.is_set():
                raise _Stopped()
            try:
                response = session.request(method, url, headers=hop_headers, stream=True,
                                           allow_redirects=False, timeout=timeout)
            except requests.RequestException as err:
                raise _Retryable(f"{_reason(err)}", url=url) from err
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
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


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
