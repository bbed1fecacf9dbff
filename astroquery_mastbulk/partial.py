"""A file's bytes in progress: the partial's name, its lock, and the validators that let it resume.

Bytes go to a dot-named partial file beside the final one (``.<name>.part``), with the server's
validators (ETag, Last-Modified, total length) in ``.<name>.part.json``, so a later run resumes
only a partial of the same version of the file. The partial is locked (``flock``) while it is
written: two runs into one folder take turns per file instead of writing one file together.

Used by the engine (`~astroquery_mastbulk.transfer`); `part_path` and `meta_path` are also the
names the generated curl script uses, so either tool resumes what the other began.
"""

import json
import os
import stat
from pathlib import Path

from .errors import TransferError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs into one folder are then not coordinated
    fcntl = None

__all__ = ["part_path", "meta_path", "Claim", "validators", "changed", "resume_headers", "read_meta",
           "write_meta", "remove_meta", "signature", "same_file", "truncate", "remove", "os_reason"]

_LOCK_POLL = 0.05
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
_PART, _META = ".part", ".part.json"  # suffixes of a partial and of its validators


def part_path(path):
    """The temporary sibling that holds a file's bytes until it is complete (dot-named: hidden)."""
    return Path(_sibling(path, _PART))


def meta_path(path):
    """Where the server's validators of a partial file are kept (beside it, dot-named)."""
    return Path(_sibling(path, _META))


def _sibling(path, suffix):
    # Plain strings: the engine builds these for every file, and pathlib parses each one again.
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}{suffix}")


class Claim:
    """This process's exclusive right to write one file's partial: ``flock`` on the partial itself.

    Locking the partial rather than a separate lock file leaves nothing behind, and the kernel
    drops the lock when its process dies, so a run killed with SIGKILL never blocks the next.
    Whoever renames or removes a partial does so while holding its lock; a waiter that then gets
    the lock on the old inode notices, and opens whatever now sits at the partial's path.

    Parameters
    ----------
    path : path-like
        The final file.
    sleep : callable
        ``sleep(seconds)`` between polls of a lock held by another run; it may raise to give up
        (the engine's raises when the run is interrupted).
    folders : set, optional
        Folders known to exist, shared by the claims of one run and added to as folders are made.
    """

    def __init__(self, path, sleep, folders=None):
        self.path = os.fspath(path)
        self.part = _sibling(self.path, _PART)
        self.fd = None
        self._committed = False
        self._sleep = sleep
        self._folders = folders if folders is not None else set()

    def acquire(self):
        """Open and lock the partial, waiting while another run holds it; True if newly acquired."""
        if self.fd is not None:
            return False
        while self.fd is None:
            fd = self._open()
            try:
                self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if same_file(fd, self.part):
                self.fd = fd
            else:
                os.close(fd)
        return True

    def _open(self):
        folder = os.path.dirname(self.part)
        if folder not in self._folders:  # made (or seen) once per run, not asked about per file
            self._make(folder)
        try:
            try:
                return os.open(self.part, _OPEN_FLAGS, 0o666)
            except FileNotFoundError:
                self._make(folder)  # removed since: make it again
                return os.open(self.part, _OPEN_FLAGS, 0o666)
        except OSError as err:
            raise TransferError(f"cannot write {self.path}: {os_reason(err)}") from err

    def _make(self, folder):
        try:
            os.makedirs(folder or os.curdir, exist_ok=True)
        except OSError as err:
            raise TransferError(f"cannot create {folder}: {os_reason(err)}") from err
        self._folders.add(folder)

    def commit(self, fsync=True):
        """Rename the complete partial into place, its bytes on disk first if ``fsync``."""
        if fsync:
            os.fsync(self.fd)
        if fcntl is None:  # Windows renames no open file; without flock, the handle guards nothing
            os.close(self.fd)
            self.fd = None
        os.replace(self.part, self.path)
        self._committed = True

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
            if not (keep or self._committed) and os.fstat(fd).st_size == 0 and same_file(fd, self.part):
                remove(self.part)
                remove_meta(self.path)
        finally:
            os.close(fd)


# -- validators: which version of the file a partial holds -----------------------------------------
def validators(headers, total):
    """What identifies the version of the file being received, from its response ``headers``."""
    return {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"), "total": total}


def changed(saved, found):
    """Whether two sets of `validators` name different versions (an unknown one matches anything)."""
    return any(saved.get(key) is not None and found.get(key) is not None and saved[key] != found[key]
               for key in ("etag", "last_modified", "total"))


def resume_headers(offset, saved):
    """The request headers that resume a partial of ``offset`` bytes whose validators are ``saved``."""
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    etag = (saved or {}).get("etag")
    # If-Range makes a server that sees another version answer 200 with the whole new file.
    validator = etag if etag and not etag.startswith("W/") else (saved or {}).get("last_modified")
    if validator:
        headers["If-Range"] = validator
    return headers


def read_meta(path):
    """The validators saved beside the partial of ``path``, or None."""
    try:
        with open(_sibling(path, _META), encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return None  # no (readable) validators: the partial is resumed on length alone
    return saved if isinstance(saved, dict) else None


def write_meta(path, found, url):
    """Save the validators ``found`` beside the partial of ``path``."""
    try:
        with open(_sibling(path, _META), "w", encoding="utf-8") as file:
            json.dump(found, file)
    except OSError as err:
        raise TransferError(f"cannot write {path}: {os_reason(err)}", url=url) from err


# -- small file-system helpers ------------------------------------------------------------------------
def signature(path):
    """Identity and state of a regular file (inode, size, mtime), or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def same_file(fd, path):
    """Whether the open file ``fd`` is still the one at ``path``."""
    try:
        on_path = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (on_path.st_dev, on_path.st_ino) == (held.st_dev, held.st_ino)


def truncate(fd):
    """Empty the partial ``fd`` (if any), quietly: the next attempt restarts it either way."""
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass  # the partial is then resumed or restarted by the next attempt; nothing more to do


def remove_meta(path):
    """Remove the validators saved beside the partial of ``path``, if any."""
    remove(_sibling(path, _META))


def remove(path):
    """Remove ``path`` if it exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def os_reason(err):
    """The short text of an `OSError` (``No space left on device``), without errno and path."""
    return err.strerror or str(err)
