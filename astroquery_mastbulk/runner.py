"""Runs a plan: download jobs → the engine → one result per job, in input order.

Files the download folder's ledger (`~astroquery_mastbulk.ledger`) knows complete and untouched
never reach the engine; every file the engine completes is recorded there as it ends.
"""

from collections import namedtuple

from .auth import auth_failure_message
from .ledger import Ledger
from .transfer import ERROR, Downloader, EngineSettings, TransferResult

__all__ = ["JobResult", "run_jobs"]


class JobResult(namedtuple("JobResult", "job status message bytes_received size", defaults=(None, 0, None))):
    """The outcome of one `~astroquery_mastbulk.jobs.DownloadJob`: ``status`` (COMPLETE, SKIPPED or
    ERROR), ``message``, ``bytes_received`` and the file's ``size``."""

    __slots__ = ()


def _refusal(job, auth):
    if job.refused:
        return f"refused: {job.refused}"
    if job.needs_token and not auth:  # only then is the token looked up (the keyring is slow)
        return ("exclusive access until " + job.row.public_release_date.strftime("%Y-%m-%d")
                + ": needs a MAST token; log in with `mastbulk login` or set MAST_API_TOKEN")
    return None


def _message(result, auth):
    if result.status == ERROR and result.http_status in (401, 403):
        return auth_failure_message(result.http_status, bool(auth))
    return result.message


def run_jobs(jobs, *, settings=None, auth=None, progress=None, executor=None, ledger_dir=None, verify=False):
    """Download every job that may run, once per distinct (URL, path), and report per job.

    Parameters
    ----------
    jobs : list of DownloadJob
        As planned by `~astroquery_mastbulk.jobs.plan_jobs`.
    settings : `~astroquery_mastbulk.transfer.EngineSettings`, optional
    auth : `~astroquery_mastbulk.auth.TokenAuth`, optional
        Headers per URL; its truth value says whether a token is available.
    progress : object, optional
        Progress sink for the engine.
    executor : `concurrent.futures.Executor`, optional
        Run each transfer as one task on this executor (a Dask cluster's, a process pool...);
        see `~astroquery_mastbulk.distributed.run_transfers`. Default: the engine's own threads.
    ledger_dir : str or os.PathLike, optional
        The download folder, whose `~astroquery_mastbulk.ledger.Ledger` records the files this
        run completes; with ``settings.cache``, files it knows complete and untouched are
        SKIPPED without a request. Default: no ledger.
    verify : bool, optional
        Check the CHECKSUM/DATASUM keywords of FITS files before they are renamed into place.

    Returns
    -------
    list of JobResult
        One per job, in the jobs' order.
    """
    settings = settings or EngineSettings()
    refusals = [_refusal(job, auth) for job in jobs]
    first = {}  # (url, path) -> the first job asking for it
    for job, refusal in zip(jobs, refusals):
        if refusal is None:
            first.setdefault((job.url, job.path), job)
    if progress is not None:
        progress.set_files(len(first))
    ledger = Ledger(ledger_dir) if ledger_dir is not None else None
    try:
        outcome = _transfer_all(first, settings=settings, auth=auth, progress=progress, executor=executor,
                                ledger=ledger, verify=verify)
    finally:
        if ledger is not None:
            ledger.close()
    results = []
    for job, refusal in zip(jobs, refusals):
        if refusal is not None:
            results.append(JobResult(job, ERROR, refusal))
            continue
        result: TransferResult = outcome[(job.url, job.path)]
        results.append(JobResult(job, result.status, _message(result, auth),
                                 result.bytes_received, result.size))
    return results


def _transfer_all(first, *, settings, auth, progress, executor, ledger, verify):
    """A result per (URL, path): from the ledger if it knows the file complete, else transferred."""
    outcome, todo = _consult(ledger if settings.cache else None, first, progress)
    check = None
    if verify:
        from .integrity import fits_problem as check
    options = {"settings": settings, "authorize": auth, "progress": progress,
               "on_done": _recorder(ledger, first), "check": check}
    if executor is None:
        done = Downloader(**options).download(todo)
    else:
        from .distributed import run_transfers
        done = run_transfers(todo, executor, **options)
    # By position: both engines return results in the order of ``todo``.
    outcome.update(zip(((transfer.url, transfer.path) for transfer in todo), done))
    return outcome


def _consult(ledger, first, progress):
    """SKIPPED results for the files the ledger knows complete, and the transfers left to run."""
    if ledger is None or not ledger.entries():  # a new folder: nothing to look up, file by file
        return {}, [job.transfer for job in first.values()]
    known, todo = {}, []
    for key, job in first.items():
        transfer = job.transfer
        result = ledger.known_complete(transfer)
        if result is not None:
            known[key] = result
            if progress is not None:
                progress.file_done(result)
        elif ledger.modified_since_recorded(transfer):
            todo.append(transfer._replace(refetch=True))
        else:
            todo.append(transfer)
    return known, todo


def _recorder(ledger, first):
    """``record(result)`` into the ledger, with the event of the job that asked for the file."""
    if ledger is None:
        return None

    def record(result):
        # Both engines hand back the transfer they were given, so its (URL, path) is a key of first.
        row = getattr(first.get((result.transfer.url, result.transfer.path)), "row", None)
        ledger.record(result, event_id=getattr(row, "event_id", None),
                      archived_date=getattr(row, "archived_date", None))
    return record
