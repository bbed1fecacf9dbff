"""A product row → a download job: the URL of its mission's endpoint and a safe local path."""

import os
import re
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .transfer import Transfer

__all__ = ["DownloadJob", "plan_jobs", "product_url", "MISSION_ENDPOINTS",
           "select_rows"]

#: Missions served by their own ``retrieve_product`` endpoint; the others go through ``Download/file``.
MISSION_ENDPOINTS = ("hst", "jwst", "roman", "roman_spectra", "roman_cgi")

_MISSION_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class DownloadJob(namedtuple("DownloadJob", "row url path mission needs_token refused",
                             defaults=(None, None, None, False, None))):
    """One requested product: where it comes from (``url``) and where it goes (``path``, a
    `~pathlib.Path`), for its ``row`` and lower-case ``mission`` (immutable).

    ``refused`` holds the reason when the row cannot be downloaded safely (the job is then
    reported as ERROR and nothing is fetched; ``url`` or ``path`` may then be None).
    ``needs_token`` is True while the product is still under exclusive access (its public
    release date lies in the future).
    """

    __slots__ = ()

    @property
    def transfer(self):
        """The `~astroquery_mastbulk.transfer.Transfer` that fetches this job's file."""
        replace_before = None
        if (self.row.event_type or "").lower() == "reprocessed" and self.row.archived_date:
            replace_before = self.row.archived_date.timestamp()
        public = getattr(self.row, "public_release_date", None) is not None and not self.needs_token
        return Transfer(url=self.url, path=self.path, replace_if_older_than=replace_before, anonymous=public)


def unsafe_name_reason(value, field):
    """Why ``value`` may not be used as one path component, or None if it is safe.

    Parameters
    ----------
    value : str
        A file, fileset or mission name from the input.
    field : str
        Its name, for the reason.

    Returns
    -------
    str or None
    """
    if _CONTROL_RE.search(value):
        return f"{field} {value!r} contains control characters"
    if os.path.isabs(value) or value.startswith(("/", "\\")) or _DRIVE_RE.match(value):
        return f"{field} {value!r} is an absolute path"
    if "/" in value or "\\" in value:
        return f"{field} {value!r} contains a path separator"
    if ".." in value or value == ".":
        return f"{field} {value!r} contains '..'"
    return None


def product_url(server, mission, filename, uri=None):
    """URL of a product on ``server`` by DESIGN.md's per-mission endpoint rules.

    Parameters
    ----------
    server : str
        Base URL of MAST, such as ``https://mast.stsci.edu``.
    mission : str
        Lower-case mission name.
    filename : str
        Product file name (hst/jwst/roman endpoints).
    uri : str, optional
        ``mast:`` URI of the product, required by the other missions.

    Returns
    -------
    str
        The URL, with the name or URI percent-quoted.

    Raises
    ------
    ValueError
        If the mission needs a ``mast:`` URI and none is given.
    """
    server = server.rstrip("/")
    if mission in MISSION_ENDPOINTS:
        return f"{server}/search/{mission}/api/v0.1/retrieve_product?product_name={quote(filename, safe='')}"
    for candidate in (uri, filename):
        if candidate and candidate.startswith("mast:"):
            return download_file_url(server, candidate)
    raise ValueError(f"mission {mission!r} is served through Download/file, which needs a mast: URI")


def download_file_url(server, uri):
    """URL of MAST's ``Download/file`` endpoint for a ``mast:`` URI.

    Parameters
    ----------
    server : str
        Base URL of MAST.
    uri : str
        The product's ``mast:`` URI.

    Returns
    -------
    str
    """
    return f"{server.rstrip('/')}/api/v0.1/Download/file?uri={quote(uri, safe=':/')}"


def _plan_one(row, *, server, base_dir, flat, default_mission, now):
    mission = (row.mission or default_mission or "").lower()
    filename = Path(row.filename).name if row.filename.startswith("mast:") else row.filename
    checks = [(filename, "filename")] + ([] if flat else [(row.fileset, "fileset")])
    reasons = [unsafe_name_reason(value, field) for value, field in checks]
    if not _MISSION_RE.match(mission):
        reasons.append(f"mission {mission!r} is not a mission name")
    reason = next((reason for reason in reasons if reason), None)
    if reason:
        return DownloadJob(row, mission=mission, refused=reason)
    try:
        url = product_url(server, mission, filename, row.uri)
    except ValueError as err:
        return DownloadJob(row, mission=mission, refused=str(err))
    folder = base_dir if flat else os.path.join(base_dir, "mastDownload", mission, row.fileset)
    return DownloadJob(row, url, Path(os.path.join(folder, filename)),  # one parse: a pathlib join parses
                       mission, bool(row.public_release_date and row.public_release_date > now))


def plan_jobs(rows, *, server, download_dir=None, flat=False, default_mission=None, now=None):
    """Turn product rows into download jobs, one per row, in input order.

    Parameters
    ----------
    rows : list of `~astroquery_mastbulk.subscription.ProductRow`
        Validated rows.
    server : str
        Base URL of MAST (``astroquery.mast.conf.server``, read by the caller at call time).
    download_dir : str or os.PathLike, optional
        Folder to download into; default the current folder.
    flat : bool, optional
        Put files straight into ``download_dir`` instead of ``mastDownload/<mission>/<fileset>/``.
    default_mission : str, optional
        Mission of rows that name none.
    now : datetime.datetime, optional
        When exclusive-access periods are judged; default now.

    Returns
    -------
    list of DownloadJob
        A job whose row is unsafe or unroutable carries the reason in ``refused`` and no path.
    """
    base_dir = os.fspath(download_dir if download_dir is not None else ".")
    now = now or datetime.now(timezone.utc)
    jobs = [_plan_one(row, server=server, base_dir=base_dir, flat=flat,
                      default_mission=default_mission, now=now) for row in rows]
    return _refuse_path_clashes(jobs)


def _refuse_path_clashes(jobs):
    """``jobs``, where a job writing the same path as an earlier one from another URL is refused."""
    # Two different URLs writing one path would overwrite each other: the first one wins.
    url_of_path, checked = {}, []
    for job in jobs:
        if not job.refused and url_of_path.setdefault(job.path, job.url) != job.url:
            job = job._replace(refused=f"another row already writes {job.path} from a different URL")
        checked.append(job)
    return checked


def select_rows(rows, *, extension=None, event_type=None):
    """Keep the rows with these file name endings and event types.

    Parameters
    ----------
    rows : list of ProductRow
    extension : str or list of str, optional
        Keep file names ending with any of these.
    event_type : str or list of str, optional
        Keep these event types (``New``, ``Reprocessed``, ``Public``...), case-insensitively.

    Returns
    -------
    list of ProductRow
    """
    if extension:
        endings = (extension,) if isinstance(extension, str) else tuple(extension)
        rows = [row for row in rows if row.filename.endswith(endings)]
    if event_type:
        types = [event_type] if isinstance(event_type, str) else list(event_type)
        types = {t.lower() for t in types}
        rows = [row for row in rows if (row.event_type or "").lower() in types]
    return rows
