"""The download ledger: what a download folder already holds, so a re-run asks the server nothing.

One SQLite file (standard library ``sqlite3``) in a hidden ``.mastbulk/`` folder directly inside
the download folder records, per completed file, its URL, path (relative to the folder), size,
modification time, event ID, archive date and when it was fetched. A file whose size and
modification time still match its entry is complete without a request; one deleted, truncated or
modified since is fetched again.

The ledger is an optimisation, never the truth: a missing, unreadable or corrupt ledger is
recreated (or, if it cannot be, ignored) and costs requests, not correctness. It never fails a
download. WAL journaling with a busy timeout lets two runs into one folder share it.

Records are written in batches (one transaction per ``_BATCH`` files, or per second, and at close):
a transaction per file cost more CPU and system calls than the file's own request. A run killed
with SIGKILL loses at most its last second of records; the re-run then asks the server for those
files' sizes (one HEAD each) instead of fetching them again.
"""

import os
import threading
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path

from .transfer import COMPLETE, SKIPPED, TransferResult

__all__ = ["LEDGER_DIR", "LEDGER_NAME", "Entry", "Ledger"]

#: The hidden folder, directly inside the download folder, that holds the ledger.
LEDGER_DIR = ".mastbulk"
LEDGER_NAME = "ledger.sqlite"

_SCHEMA = """CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, url TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    event_id TEXT, archived_date TEXT, fetched_at TEXT NOT NULL)"""
_COLUMNS = "path, url, size, mtime_ns, event_id, archived_date, fetched_at"
_INSERT = f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_BUSY_TIMEOUT = 30.0
_BATCH, _BATCH_SECONDS = 64, 1.0


class Entry(namedtuple("Entry", _COLUMNS.replace(",", ""), defaults=(None, None, None))):
    """One completed file as the ledger knows it: ``path`` (relative), ``url``, ``size``,
    ``mtime_ns``, ``event_id``, ``archived_date`` and ``fetched_at`` (dates: ISO 8601 text, UTC)."""

    __slots__ = ()

    def fetched_before(self, posix_time):
        """Whether this file was fetched before ``posix_time`` (True if the entry cannot tell)."""
        try:
            return datetime.fromisoformat(self.fetched_at).timestamp() < posix_time
        except (TypeError, ValueError):
            return True


class Ledger:
    """The ledger of one download folder; thread-safe, and never raises on ledger trouble.

    Parameters
    ----------
    folder : str or os.PathLike
        The download folder; the ledger is ``folder/.mastbulk/ledger.sqlite``, created when the
        first file is recorded.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.file = self.folder / LEDGER_DIR / LEDGER_NAME
        self._lock = threading.Lock()  # the pending records and the timer: held for moments
        self._db_lock = threading.Lock()  # the database: held while it is read or written
        self._db = None
        self._disabled = False
        self._entries = None
        self._root = None  # the folder's absolute path, with a trailing separator
        self._cwd = None  # the working directory when the first path was resolved
        self._pending = []  # records not yet written
        self._timer = None  # writes the pending records a second after the first of them
        self._fired = None  # the timer that last fired: its write may still be under way

    def __repr__(self):
        return f"<Ledger {self.file}>"

    def entries(self):
        """Every recorded file, by relative path (read once, then cached); empty if there is no ledger."""
        if self._entries is None:
            rows = self._run(self._select_all, create=False) or []
            self._entries = {row[0]: Entry(*row) for row in rows}
        return self._entries

    def known_complete(self, transfer):
        """A SKIPPED result if ``transfer``'s file is complete and untouched since it was recorded.

        Untouched means the same URL, size and modification time (nanoseconds) as recorded. A
        transfer marked ``replace_if_older_than`` (a reprocessed file) is not known complete if the
        file was fetched, or last modified, before that time.

        Returns
        -------
        `~astroquery_mastbulk.transfer.TransferResult` or None
        """
        entry, st = self._recorded_state(transfer)
        if st is None or (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            return None
        limit = transfer.replace_if_older_than
        if limit is not None and (st.st_mtime < limit or entry.fetched_before(limit)):
            return None
        message = f"already on disk, unchanged since fetched {entry.fetched_at}"
        return TransferResult(transfer, SKIPPED, message, 0, entry.size)

    def modified_since_recorded(self, transfer):
        """Whether ``transfer``'s file was recorded complete and has changed (size or mtime) since.

        Such a file is fetched again even if its size still matches the server's.
        """
        entry, st = self._recorded_state(transfer)
        # Not recorded, or gone (the engine fetches it anyway): nothing to force.
        return st is not None and (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns)

    def record(self, result, *, event_id=None, archived_date=None):
        """Remember a COMPLETE or SKIPPED file as it now is on disk; other results are ignored.

        Parameters
        ----------
        result : `~astroquery_mastbulk.transfer.TransferResult`
        event_id : str, optional
            The notification event that asked for the file.
        archived_date : datetime.datetime, optional
            When the archive (re)processed it.
        """
        path = self._relative(result.transfer.path)
        if result.status not in (COMPLETE, SKIPPED) or path is None:
            return
        try:
            st = os.stat(result.transfer.path)
        except OSError:
            return
        entry = Entry(path, result.transfer.url, st.st_size, st.st_mtime_ns, event_id,
                      archived_date.isoformat() if archived_date else None,
                      self._fetched_at(result, path, st))
        with self._lock:
            self._pending.append(entry)  # a namedtuple: sqlite3 takes it as the row's values
            due = len(self._pending) >= _BATCH
            # A full batch is written now; a timer already waiting stays, to write within a second
            # what comes after it (cancelled here, its thread could outlive the run: see close).
            if not due and self._timer is None:
                self._timer = threading.Timer(_BATCH_SECONDS, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush()

    def _on_timer(self):
        with self._lock:
            self._timer = None  # the next record starts a new one
            self._fired = threading.current_thread()
        self.flush()

    def flush(self):
        """Write the records not yet written."""
        # Taken out of the queue first, so that the workers recording files meanwhile never wait
        # for the disk (the first write also loads sqlite3 and creates the ledger: tens of ms).
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:  # nothing to write: do not create a ledger
            self._run(lambda db: self._write(db, batch), create=True)

    def close(self):
        """Write what is pending and close the database (a later call reopens it)."""
        with self._lock:
            timers = [timer for timer in (self._timer, self._fired) if timer is not None]
            self._timer = self._fired = None
        for timer in timers:
            # cancel() only asks: the thread ends when it next runs, and a timer that has fired
            # may be writing (it would reopen the database after close). No thread outlives a run.
            timer.cancel()
            timer.join()
        self.flush()
        with self._db_lock:
            self._drop_connection()

    # -- internals -----------------------------------------------------------------------------
    def _recorded_state(self, transfer):
        """``(entry, os.stat result)`` of ``transfer``'s file; the stat is None if the file is not
        recorded from this URL or is gone."""
        entry = self.entries().get(self._relative(transfer.path))
        if entry is None or entry.url != transfer.url:
            return None, None
        try:
            return entry, os.stat(transfer.path)
        except OSError:
            return entry, None

    def _fetched_at(self, result, path, st):
        if result.status == COMPLETE:
            return datetime.now(timezone.utc).isoformat()
        known = self.entries().get(path)
        if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return known.fetched_at  # skipped: still the bytes fetched then
        return datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat()  # best estimate

    def _relative(self, path):
        """``path`` relative to the download folder, with ``/`` separators; None if outside it."""
        # A prefix test rather than os.path.relpath, which costs 4 abspath calls: this runs
        # several times per file, and a no-op re-run of 10,000 files is all ledger look-ups.
        if self._root is None:
            self._cwd = os.getcwd()  # once: abspath would ask the OS again for every file
            root = os.path.join(self._cwd, self.folder)
            root = os.path.normpath(root)
            self._root = os.path.normcase(root if root.endswith(os.sep) else root + os.sep)
        full = os.path.normpath(os.path.join(self._cwd, path))
        if not os.path.normcase(full).startswith(self._root):
            return None
        return full[len(self._root):].replace(os.sep, "/") or None

    @staticmethod
    def _write(db, batch):
        """One transaction for a batch of records (retried whole if the ledger is recreated)."""
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, batch)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise

    @staticmethod
    def _select_all(db):
        return db.execute(f"SELECT {_COLUMNS} FROM files").fetchall()

    def _run(self, action, *, create):
        """``action(db)`` under the database lock; a corrupt ledger is recreated once, other trouble
        disables it."""
        with self._db_lock:
            for attempt in (1, 2):
                if self._disabled:
                    return None
                if self._db is None and not create and not self.file.exists():
                    return None  # no ledger (yet, or since a corrupt one was discarded): nothing to read
                import sqlite3  # here: a first run sends its first requests without loading it
                try:
                    if self._db is None:
                        self._db = self._connect()
                    return action(self._db)
                except sqlite3.OperationalError as err:  # locked too long, read-only, disk full
                    self._give_up(err)
                except sqlite3.DatabaseError as err:  # not a database, malformed: start afresh
                    if attempt == 2:
                        self._give_up(err)
                    else:
                        from .logger import log  # only to log: logging costs 5 ms at every start
                        log.warning("download ledger %s is unreadable (%s): recreating it", self.file, err)
                        self._discard()
                except OSError as err:
                    self._give_up(err)
            return None

    def _connect(self):
        import sqlite3
        self.file.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: transactions are explicit (a batch of records at a time).
        db = sqlite3.connect(str(self.file), timeout=_BUSY_TIMEOUT, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable enough, no fsync per record
            db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _drop_connection(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _discard(self):
        self._drop_connection()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(f"{self.file}{suffix}")
            except OSError:
                pass

    def _give_up(self, err):
        from .logger import log
        log.warning("download ledger %s not used in this run (%s): complete files are checked with the "
                    "server instead", self.file, err)
        self._disabled = True
        with self._lock:
            self._pending.clear()
        self._drop_connection()
