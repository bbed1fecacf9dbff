"""One progress display for a whole run, on stderr: a live bar on a terminal, plain lines otherwise.

Both receive the engine's calls (see `~astroquery_mastbulk.transfer.Downloader`): ``set_files``,
``add_total``, ``add_bytes``, ``file_done`` and ``close``.
"""

import sys
import threading

__all__ = ["AggregateProgress", "LineProgress", "make_progress"]


class AggregateProgress:
    """A tqdm bar for the whole run: bytes of the expected total, files done, rate and ETA.

    Sizes are learnt file by file from each response's ``Content-Length``. Until every file has
    started, the total counts each file not yet started at the mean size seen so far, so the
    percentage and ETA describe the whole run rather than only the files in flight.

    The engine reports a file's ``add_total``, ``add_bytes`` and ``file_done`` from the worker
    thread that transfers it; per-thread state pairs them, so a retry's new ``Content-Length``
    replaces what the broken attempt still expected instead of adding to it.

    Parameters
    ----------
    stream : file-like, optional
        Where to draw the bar; default ``sys.stderr``.
    """

    def __init__(self, stream=None):
        from tqdm import tqdm  # the terminal bar; only built when stderr is a terminal
        self._lock = threading.Lock()
        self._local = threading.local()
        self._files = self._done = self._started = 0
        self._expected = 0  # bytes expected from the files started so far
        self._first_sizes = []  # each started file's first announced length, for the mean
        self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, file=stream or sys.stderr,
                         desc="mastbulk", dynamic_ncols=True, leave=True, mininterval=0.2)
        self._show_files()

    def set_files(self, count):
        """Announce how many files the run will transfer."""
        with self._lock:
            self._files = count
            self._show_files()
            self._bar.refresh()

    def add_total(self, nbytes):
        """A response of ``nbytes`` starts on this thread's file (a first attempt or a retry)."""
        here = self._local
        with self._lock:
            if getattr(here, "active", False):
                self._expected -= max(0, here.expect - here.got)  # the broken attempt's unreceived rest
            else:
                here.active = True
                self._started += 1
                self._first_sizes.append(nbytes)
            here.expect, here.got = nbytes, 0
            self._expected += nbytes
            self._update_total()
            self._bar.refresh()

    def add_bytes(self, nbytes):
        """Count bytes received on this thread's file."""
        here = self._local
        with self._lock:
            here.got = getattr(here, "got", 0) + nbytes
            self._bar.update(nbytes)

    def file_done(self, result):
        """Count this thread's file as finished, whatever its status."""
        here = self._local
        with self._lock:
            if getattr(here, "active", False):
                if result.status != "COMPLETE":
                    self._expected -= max(0, here.expect - here.got)  # bytes that will not come
            else:
                self._started += 1  # skipped or failed before any body arrived
            here.active = False
            self._done += 1
            self._update_total()
            self._show_files()
            self._bar.update(0)  # redraws, at most every mininterval

    def _update_total(self):
        unstarted = max(0, self._files - self._started)
        mean = sum(self._first_sizes) / len(self._first_sizes) if self._first_sizes else 0
        self._bar.total = max(int(self._expected + mean * unstarted), self._bar.n)

    def _show_files(self):
        self._bar.set_postfix_str(f"{self._done}/{self._files} files", refresh=False)

    def close(self):
        """Draw the final state and leave it on screen."""
        with self._lock:
            self._bar.close()


class LineProgress:
    """Plain line-per-file output, for logs, pipes and cron (no control characters).

    Parameters
    ----------
    stream : file-like, optional
        Where to write; default ``sys.stderr``.
    """

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
        """Print one line for a finished file: count, status, path, and size or message."""
        if result.status == "COMPLETE" and result.size is not None:
            note = f" ({size_text(result.size)})"
        else:
            note = f": {result.message}" if result.message else ""
        with self._lock:
            self._done += 1
            print(f"[{self._done}/{self._files}] {result.status} {result.transfer.path}{note}",
                  file=self._stream, flush=True)

    def close(self):
        """Nothing to finish."""


def size_text(nbytes):
    """A byte count as the progress bar shows it (tqdm's formatter, powers of 1024).

    Parameters
    ----------
    nbytes : int

    Returns
    -------
    str
        For example ``"5.62kB"``.
    """
    from tqdm import tqdm
    return tqdm.format_sizeof(nbytes, suffix="B", divisor=1024)


def make_progress(verbose, stream=None):
    """The progress display for a run.

    Parameters
    ----------
    verbose : bool
        False: no display at all.
    stream : file-like, optional
        Where to show progress; default ``sys.stderr``.

    Returns
    -------
    AggregateProgress, LineProgress or None
        A live bar on a terminal or in a Jupyter notebook, plain lines otherwise, None when not
        verbose.
    """
    if not verbose:
        return None
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or _in_notebook():
        return AggregateProgress(stream)
    return LineProgress(stream)


def _in_notebook():
    # A Jupyter kernel's stderr is no terminal, yet it redraws tqdm's bar in place,
    # which is what the notebook's users expect rather than a line per file.
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)()
    return type(ipython).__name__ == "ZMQInteractiveShell"
