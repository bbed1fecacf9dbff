"""The engine: runs transfers concurrently, with retries, Range resume and atomic writes.

It knows URLs, paths and HTTP, nothing of JSON, missions or astroquery. Retries are written
here rather than left to urllib3's ``Retry``: a transfer that breaks mid-body must resume from
the bytes already on disk with a fresh Range request, which a connection-level retry cannot do.

Two modules serve it: `~astroquery_mastbulk.partial` owns a file's bytes in progress (the
dot-named partial, its lock, the validators that let a later run resume it) and
`~astroquery_mastbulk.httpclient` sends the requests (pools, proxies, redirects, statuses).
"""

import base64
import os
import random
import threading
from collections import deque, namedtuple
from functools import wraps

from .errors import TransferError
from .httpclient import BODY_ERRORS, HttpClient, Retryable, Stopped, raise_for_status, reason, resume_point
from .partial import (Claim, changed, meta_path, os_reason, part_path, read_meta, remove_meta, resume_headers,
                      signature, truncate, validators, write_meta)

__all__ = ["EngineSettings", "Transfer", "TransferResult", "Downloader", "part_path", "meta_path",
           "COMPLETE", "SKIPPED", "ERROR"]

COMPLETE, SKIPPED, ERROR = "COMPLETE", "SKIPPED", "ERROR"
_WORKERS_PER_CONNECTION = 2
#: A body that arrives whole but fails its checksum is fetched at most this many times.
_CORRUPT_ATTEMPTS = 3


# Records are namedtuples, not dataclasses: importing dataclasses (and with it inspect, ast, dis)
# and building each class cost the ``mastbulk`` command about 20 ms of its start, a tenth of it.
_ENGINE_DEFAULTS = {
    "max_workers": 8, "connect_timeout": 10.0, "read_timeout": 60.0, "retries": 5, "backoff": 0.5,
    "backoff_max": 30.0, "retry_after_max": 120.0, "chunk_size": 1 << 20, "max_redirects": 8,
    "cache": True, "fsync": False, "user_agent": "astroquery-mastbulk",
}


_EngineFields = namedtuple("EngineSettings", _ENGINE_DEFAULTS, defaults=_ENGINE_DEFAULTS.values())


class EngineSettings(_EngineFields):
    """How the engine transfers: concurrency, patience and politeness (immutable).

    Attributes
    ----------
    max_workers : int
        Files transferred at once: at most this many connections per host. Default 8.
    connect_timeout, read_timeout : float
        Seconds to wait for a connection, and for the server between two reads (10 and 60).
    retries : int
        Further attempts at one file after a transient failure (5).
    backoff, backoff_max : float
        First retry delay and its cap, in seconds; the delay doubles each time, with jitter (0.5
        and 30).
    retry_after_max : float
        Longest Retry-After honoured, in seconds (120).
    chunk_size : int
        Bytes read and written at a time (memory use stays ``max_workers * chunk_size``; 1 MiB).
    max_redirects : int
        Redirect hops followed per request (8).
    cache : bool
        Skip a final file whose size equals the server's Content-Length (True).
    fsync : bool
        Flush each file to the disk before renaming it into place, so that not even a power cut
        leaves a renamed file without its bytes. Off by default, as in curl, wget and astroquery:
        it makes a download as slow as the disk (about 1 s per GiB here), not the network; without
        it a file cut short by a crash has the wrong size, and the next run fetches it again.
    user_agent : str
        The User-Agent header's product name.
    """

    __slots__ = ()

    @wraps(_EngineFields.__new__)  # help() and the docs then show the fields and their defaults
    def __new__(cls, *args, **kwargs):
        settings = super().__new__(cls, *args, **kwargs)
        if int(settings.max_workers) < 1:
            raise ValueError(f"max_workers must be at least 1, not {settings.max_workers}")
        return settings


class Transfer(namedtuple("Transfer", "url path replace_if_older_than refetch anonymous",
                          defaults=(None, False, False))):
    """One file to fetch: ``url`` into ``path`` (immutable).

    ``replace_if_older_than`` (POSIX time) marks a local copy modified before it as stale: it is
    fetched again even when its size matches (the archive reprocessed the file). ``refetch``
    marks a local copy known to have been modified since it was fetched: it is fetched again
    unless another run rewrites it first. ``anonymous`` marks a file the archive lists as public:
    it is asked for without credentials, and with them only if the server refuses (401 or 403),
    so a run of public files neither sends the token nor opens the keyring.
    """

    __slots__ = ()


class TransferResult(namedtuple("TransferResult", "transfer status message bytes_received size http_status",
                                defaults=(None, 0, None, None))):
    """What happened to one `Transfer`: ``status`` (COMPLETE, SKIPPED or ERROR), ``message``,
    ``bytes_received``, the file's ``size`` and the last ``http_status``."""

    __slots__ = ()


class _Corrupt(Retryable):
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
        self._http = HttpClient(self.settings, self._authorize, self._stop)
        self._folders = set()  # folders made or seen by this run's claims (set.add is thread-safe)

    def __repr__(self):
        return f"<Downloader max_workers={self.settings.max_workers}>"

    # -- running -------------------------------------------------------------------------------
    def download(self, transfers):
        """Fetch every transfer; return results in the same order.

        A Ctrl-C stops the workers promptly, even those waiting on a silent server, keeps
        partial files for the next run (which resumes them) and re-raises `KeyboardInterrupt`.
        """
        transfers = list(transfers)
        if not transfers:
            return []
        results, failures = [None] * len(transfers), []
        # Workers draining one queue rather than a future per file: 400 submits to a
        # ThreadPoolExecutor fought the 16 busy workers for its locks (a sixth of the main thread's
        # time, on loopback), and concurrent.futures brings logging into every start. A deque's
        # popleft is atomic, so the queue needs no lock of its own.
        pending = deque(enumerate(transfers))
        work = (pending, results, failures)
        threads = [threading.Thread(target=self._work, args=work, name=f"mastbulk-{n}")
                   for n in range(self._worker_count(len(transfers)))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.25)  # a timed join keeps the main thread responsive to Ctrl-C
        except BaseException:
            self._stop.set()
            self._http.interrupt()  # wakes workers blocked in a read, so the joins below are short
            raise
        finally:
            pending.clear()
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            self._http.close()
        if failures:
            raise failures[0]  # a bug, not a transfer failure (those are results): show it
        return results

    def _worker_count(self, files):
        # Twice as many workers as connections: while one worker waits for the network, another
        # prepares its file (folder, lock) or finishes one (rename, ledger), and takes the connection
        # as soon as it is free, instead of leaving it idle for that work (about 2.5 ms per file).
        return min(_WORKERS_PER_CONNECTION * int(self.settings.max_workers), files)

    def _work(self, pending, results, failures):
        while True:
            try:
                index, transfer = pending.popleft()
            except IndexError:
                return
            try:
                results[index] = self._run_one(transfer)
            except BaseException as err:  # a bug: the main thread raises it once all have stopped
                failures.append(err)

    def _run_one(self, transfer):
        try:
            result = self._fetch(transfer)
        except Stopped:
            result = TransferResult(transfer, ERROR, "interrupted; the partial file is kept for resuming")
        except TransferError as err:
            result = TransferResult(transfer, ERROR, str(err), http_status=err.status)
        except OSError as err:  # the file system changed under us (a file vanished, a folder moved)
            result = TransferResult(transfer, ERROR, f"{transfer.path}: {os_reason(err)}")
        if self._on_done is not None:
            self._on_done(result)
        if self._progress is not None:
            self._progress.file_done(result)
        return result

    # -- one file ------------------------------------------------------------------------------
    def _fetch(self, transfer):
        path = os.fspath(transfer.path)  # a string: os calls take it as is, pathlib parses it each time
        claim = Claim(path, self._sleep, self._folders)
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
            except Retryable as err:
                attempt += 1
                corrupt += isinstance(err, _Corrupt)
                if attempt >= attempts or corrupt >= _CORRUPT_ATTEMPTS:
                    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    raise TransferError(f"{err} (gave up after {tries})",
                                        url=transfer.url, status=err.status) from err
                self._sleep(self._delay(attempt - 1, err.wait))

    def _delay(self, attempt, server_wait):
        if server_wait is not None:
            return min(max(server_wait, 0.0), self.settings.retry_after_max)
        cap = min(self.settings.backoff_max, self.settings.backoff * (2 ** attempt))
        return random.uniform(cap / 2, cap)

    def _sleep(self, seconds):
        if self._stop.wait(seconds):
            raise Stopped()

    def _attempt(self, transfer, path, claim):
        refetch = transfer.refetch
        while True:
            before = signature(path)
            if (self.settings.cache and not refetch and before is not None
                    and not self._is_stale(transfer, path)):
                skipped = self._check_cached(transfer, path)
                if skipped is not None:
                    return skipped
            if claim.acquire() and signature(path) != before:
                refetch = False  # another run rewrote the file while we waited for its lock: look again
                continue
            return self._get(transfer, path, claim)

    @staticmethod
    def _is_stale(transfer, path):
        limit = transfer.replace_if_older_than
        return limit is not None and os.stat(path).st_mtime < limit

    def _check_cached(self, transfer, path):
        if self._check is not None and self._check(path) is not None:
            return None  # corrupt on disk: fetch it again
        with self._http.request("HEAD", transfer.url, anonymous=transfer.anonymous) as response:
            if response.status_code in (405, 501):
                return None  # no HEAD here: let the GET decide
            raise_for_status(response)
            length = response.headers.get("Content-Length")
        local = os.stat(path).st_size
        if length is not None and int(length) == local:
            return TransferResult(transfer, SKIPPED, "already on disk with the server's size", 0, local,
                                  response.status_code)
        return None

    def _get(self, transfer, path, claim):
        url, fd = transfer.url, claim.fd
        on_disk = offset = os.fstat(fd).st_size
        saved = read_meta(path) if offset else None
        with self._http.request("GET", url, resume_headers(offset, saved),
                                anonymous=transfer.anonymous) as response:
            if response.status_code == 416 and offset:
                truncate(fd)  # our partial is not a prefix of the server's file: start over
                raise Retryable("server refused to resume; restarting", url=url, wait=0)
            raise_for_status(response)
            offset, total = resume_point(response, offset)
            found = validators(response.headers, total)
            if offset and saved is not None and changed(saved, found):
                truncate(fd)  # a server ignoring If-Range sent the rest of another version
                raise Retryable("the file changed on the server since the partial began; restarting",
                                 url=url, wait=0)
            if found != saved and (total is None or total - offset > self.settings.chunk_size):
                # A body of one chunk is written whole or not at all: no partial of it to resume.
                write_meta(path, found, url)
            digest = _Digest.of(response, fd, offset)
            received = self._stream(response, fd, offset, on_disk, digest, path, url)
        size = offset + received
        if total is not None and size != total:
            raise Retryable(f"short body: got {size} of {total} bytes", url=url)
        self._verify(fd, path, digest, url)
        try:
            claim.commit(fsync=self.settings.fsync)
        except OSError as err:
            truncate(claim.fd)  # None once a Windows commit closed it
            raise TransferError(f"cannot write {path}: {os_reason(err)}", url=url) from err
        remove_meta(path)
        return TransferResult(transfer, COMPLETE, None, received, size, response.status_code)

    def _stream(self, response, fd, offset, on_disk, digest, path, url):
        """Write the body into the locked partial ``fd`` (``on_disk`` bytes long) from ``offset``;
        return the bytes received."""
        if self._progress is not None and response.headers.get("Content-Length"):
            self._progress.add_total(int(response.headers["Content-Length"]))
        received = 0
        try:
            if on_disk > offset:
                # Only when there is something to cut: on ext4, truncating even an empty file
                # makes its close flush the whole new file to the disk (auto_da_alloc).
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            for chunk in response.iter_content(chunk_size=self.settings.chunk_size):
                if self._stop.is_set():
                    raise Stopped()
                _write_all(fd, chunk)
                if digest is not None:
                    digest.update(chunk)
                received += len(chunk)
                if self._progress is not None:
                    self._progress.add_bytes(len(chunk))
        except BODY_ERRORS as err:
            if self._stop.is_set():
                raise Stopped() from err
            raise Retryable(f"connection broken after {offset + received} bytes: {reason(err)}",
                             url=url) from err
        except OSError as err:
            truncate(fd)  # a write error (disk full, file too large): free the space, fail this file
            raise TransferError(f"cannot write {path}: {os_reason(err)}", url=url) from err
        return received

    def _verify(self, fd, path, digest, url):
        """Raise `_Corrupt` (after emptying the partial) if the whole body fails a content check."""
        if digest is not None and not digest.matches():
            problem = (f"checksum mismatch: X-Checksum-Sha256 is {digest.expected}, "
                       f"the bytes received hash to {digest.hexdigest()}")
        else:
            problem = self._check(part_path(path)) if self._check is not None else None
        if problem:
            truncate(fd)
            raise _Corrupt(problem, url=url)


def _write_all(fd, data):
    # os.write on the descriptor: a buffered file object around it would cost an isatty probe and
    # three seeks per file, and buffer nothing (chunks are large).
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Digest:
    """SHA-256 of a whole file, fed with the partial already on disk, then with the body."""

    def __init__(self, expected):
        self.expected = expected.strip()
        import hashlib  # only for servers that send a checksum: 5 ms less at every start
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
