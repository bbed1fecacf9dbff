"""Runs a plan: download jobs → the engine → one result per job, in input order."""

from dataclasses import dataclass

from .auth import auth_failure_message
from .transfer import ERROR, Downloader, TransferResult

__all__ = ["JobResult", "run_jobs"]


@dataclass
class JobResult:
    """The outcome of one `~astroquery_mastbulk.jobs.DownloadJob`."""

    job: object
    status: str
    message: str = None
    bytes_received: int = 0
    size: int = None


def _refusal(job, have_token):
    if job.refused:
        return f"refused: {job.refused}"
    if job.needs_token and not have_token:
        return ("exclusive access until " + job.row.public_release_date.strftime("%Y-%m-%d")
                + ": needs a MAST token; log in with `mastbulk login` or set MAST_API_TOKEN")
    return None


def _message(result, have_token):
    if result.status == ERROR and result.http_status in (401, 403):
        return auth_failure_message(result.http_status, have_token)
    return result.message


def run_jobs(jobs, *, settings=None, auth=None, progress=None):
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

    Returns
    -------
    list of JobResult
        One per job, in the jobs' order.
    """
    have_token = bool(auth)
    refusals = [_refusal(job, have_token) for job in jobs]
    unique = {}
    for job, refusal in zip(jobs, refusals):
        if refusal is None:
            unique.setdefault((job.url, job.path), job.transfer)
    if progress is not None:
        progress.set_files(len(unique))
    engine = Downloader(settings, authorize=auth, progress=progress)
    outcome = dict(zip(unique, engine.download(list(unique.values()))))
    results = []
    for job, refusal in zip(jobs, refusals):
        if refusal is not None:
            results.append(JobResult(job, ERROR, refusal))
            continue
        result: TransferResult = outcome[(job.url, job.path)]
        results.append(JobResult(job, result.status, _message(result, have_token),
                                 result.bytes_received, result.size))
    return results
