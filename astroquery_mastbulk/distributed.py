"""Transfers on any `concurrent.futures.Executor`: a Dask cluster, a process pool, more threads.

Each transfer is one task. The task runs in the executor's worker with a
`~astroquery_mastbulk.transfer.Downloader` of its own and writes straight into the download
folder, which must be shared (the same path on every worker): bytes go to a temporary sibling
and are renamed into place, so workers never see or leave half-written files, and a task that
dies leaves a partial file the next run resumes.

The caller keeps at most ``settings.max_workers`` tasks in flight per host, so a whole cluster
is as polite to each server as one local run, and assembles the results in input order.

The token travels to the workers inside ``authorize`` (they need it for exclusive-access files):
use a cluster you trust, over TLS when it spans machines.

>>> from dask.distributed import Client                                     # doctest: +SKIP
>>> client = Client("tcp://scheduler:8786")                                 # doctest: +SKIP
>>> MastMissions.download_products("event.json", download_dir="/shared/jwst",
...                                executor=client.get_executor())          # doctest: +SKIP
"""

from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from urllib.parse import urlsplit

from .transfer import ERROR, Downloader, EngineSettings, TransferResult

__all__ = ["run_transfers", "transfer_task"]

# Seconds between checks of the futures: keeps the caller responsive to Ctrl-C.
_POLL = 0.25


def transfer_task(transfer, settings, authorize=None, check=None):
    """Fetch one transfer in this process: the task each executor worker runs.

    Parameters
    ----------
    transfer : `~astroquery_mastbulk.transfer.Transfer`
        With an absolute path.
    settings : `~astroquery_mastbulk.transfer.EngineSettings`
    authorize, check : callable, optional
        As for the `~astroquery_mastbulk.transfer.Downloader`.

    Returns
    -------
    `~astroquery_mastbulk.transfer.TransferResult`
    """
    result, = Downloader(settings, authorize=authorize, check=check).download([transfer])
    return result


def _host(url):
    return urlsplit(url).netloc.lower()


def _outcome(future, transfer):
    try:
        result = future.result()
    except Exception as err:  # the task never finished: a worker died, the executor shut down
        return TransferResult(transfer, ERROR, f"task failed on the executor: {type(err).__name__}: {err}")
    return result._replace(transfer=transfer)  # the caller's (maybe relative) path


def _report(progress, result):
    if progress is None:
        return
    if result.bytes_received:  # bytes are known only once a task ends: count them then
        progress.add_total(result.bytes_received)
        progress.add_bytes(result.bytes_received)
    progress.file_done(result)


class _Window:
    """Tasks waiting per host, and the futures running, at most ``cap`` per host."""

    def __init__(self, transfers, cap):
        self.cap = cap
        self.waiting = {}
        for index, transfer in enumerate(transfers):
            self.waiting.setdefault(_host(transfer.url), deque()).append(index)
        self.running = {}
        self.busy = Counter()

    def fill(self, submit):
        for host, queue in list(self.waiting.items()):
            while queue and self.busy[host] < self.cap:
                index = queue.popleft()
                self.running[submit(index)] = (index, host)
                self.busy[host] += 1
            if not queue:
                del self.waiting[host]

    def finished(self):
        done, _pending = wait(self.running, timeout=_POLL, return_when=FIRST_COMPLETED)
        for future in done:
            index, host = self.running.pop(future)
            self.busy[host] -= 1
            yield index, future


def run_transfers(transfers, executor, *, settings=None, authorize=None, progress=None, on_done=None,
                  check=None):
    """Run transfers as tasks on ``executor``; one result per transfer, in input order.

    Parameters
    ----------
    transfers : list of `~astroquery_mastbulk.transfer.Transfer`
        Distinct (URL, path) pairs. Relative paths are made absolute here, against the
        caller's current folder, before they travel to the workers.
    executor : `concurrent.futures.Executor`
        For example ``dask.distributed.Client(...).get_executor()``, a ``ProcessPoolExecutor``
        or a ``ThreadPoolExecutor``. Tasks and their arguments must pickle for the first two.
    settings : `~astroquery_mastbulk.transfer.EngineSettings`, optional
        Each task's engine settings; ``max_workers`` caps the tasks in flight per host.
    authorize : callable, optional
        Headers per URL (a picklable `~astroquery_mastbulk.auth.TokenAuth`).
    progress : object, optional
        Told of each file (and its bytes) as its task ends.
    on_done : callable, optional
        ``on_done(result)``, called here, in the caller, as each task's result arrives.
    check : callable, optional
        Content check run by each task's engine, as for the
        `~astroquery_mastbulk.transfer.Downloader` (a module-level function, so that it pickles).

    Returns
    -------
    list of `~astroquery_mastbulk.transfer.TransferResult`
        A task that fails outright (its worker died) is an ERROR result; the others go on.
        Ctrl-C cancels the tasks not yet started and re-raises; partial files stay to resume.
    """
    transfers = list(transfers)
    settings = settings or EngineSettings()
    window = _Window(transfers, int(settings.max_workers))
    results = [None] * len(transfers)

    def submit(index):
        task = transfers[index]._replace(path=Path(transfers[index].path).absolute())
        return executor.submit(transfer_task, task, settings, authorize, check)

    try:
        while window.waiting or window.running:
            window.fill(submit)
            for index, future in window.finished():
                results[index] = _outcome(future, transfers[index])
                if on_done is not None:
                    on_done(results[index])
                _report(progress, results[index])
    except BaseException:
        for future in window.running:
            future.cancel()
        raise
    return results
