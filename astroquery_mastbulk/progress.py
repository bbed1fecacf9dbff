"""One aggregate progress display for a run: files and bytes, on stderr."""

import sys
import threading

__all__ = ["AggregateProgress", "LineProgress", "make_progress"]


class AggregateProgress:
    """A tqdm bar counting bytes, with files done in its postfix (thread-safe)."""

    def __init__(self, stream=None):
        from tqdm.auto import tqdm
        self._lock = threading.Lock()
        self._files = 0
        self._done = 0
        self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, file=stream or sys.stderr,
                         desc="mastbulk", dynamic_ncols=True, leave=True, mininterval=0.2)

    def set_files(self, count):
        """Announce how many files the run will transfer."""
        self._files = count
        self._show_files()

    def add_total(self, nbytes):
        """Grow the expected byte total as each file's length becomes known."""
        with self._lock:
            self._bar.total = (self._bar.total or 0) + nbytes
            self._bar.refresh()

    def add_bytes(self, nbytes):
        """Count bytes received."""
        with self._lock:
            self._bar.update(nbytes)

    def file_done(self, result):
        """Count one finished file (whatever its status)."""
        with self._lock:
            self._done += 1
            self._show_files()

    def _show_files(self):
        self._bar.set_postfix_str(f"{self._done}/{self._files} files", refresh=False)

    def close(self):
        """Finish the bar."""
        self._bar.close()


class LineProgress:
    """Plain line-per-file output, for logs and pipes (no control characters)."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._files = 0
        self._done = 0

    def set_files(self, count):
        """Announce how many files the run will transfer."""
        self._files = count

    def add_total(self, nbytes):
        """Ignored: a line is printed per file, not per byte."""

    def add_bytes(self, nbytes):
        """Ignored: a line is printed per file, not per byte."""

    def file_done(self, result):
        """Print one line for a finished file."""
        with self._lock:
            self._done += 1
            note = f" ({result.message})" if result.message else ""
            print(f"[{self._done}/{self._files}] {result.status} {result.transfer.path}{note}",
                  file=self._stream, flush=True)

    def close(self):
        """Nothing to finish."""


def make_progress(verbose, stream=None):
    """The progress display for ``verbose``: a bar on a terminal, lines otherwise, None if quiet."""
    if not verbose:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        return AggregateProgress(stream)
    return LineProgress(stream)
