"""astroquery's `MastMissionsClass` with a concurrent, resumable ``download_products``; `enable`/`disable`."""

import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from astropy.table import Row, Table, vstack
from astroquery.exceptions import NoResultsWarning
from astroquery.mast import conf as mast_conf
from astroquery.mast import utils as mast_utils
from astroquery.mast.missions import MastMissionsClass as _AstroqueryMissions

from . import auth, subscription
from .auth import token_auth
from .connections import ServiceConnection
from .defaults import engine_settings
from .errors import InputError
from .jobs import plan_jobs, select_rows
from .logger import log
from .manifest import results_table
from .progress import make_progress
from .runner import run_jobs
from .transfer import ERROR

__all__ = ["MastMissionsClass", "MastMissions", "enable", "disable"]


def _explicit_token(client):
    # A token given to our constructor, or to astroquery's own login() (kept as a session cookie).
    token = getattr(client, "_mastbulk_token", None)
    session = getattr(client, "_session", None)
    if token is None and session is not None:
        token = session.cookies.get("mast_token")
    return token


def _is_dataset_ids(products):
    if isinstance(products, str):
        return not (os.path.exists(products) or products.lower().endswith(".json"))
    return isinstance(products, list) and bool(products) and all(isinstance(p, str) for p in products)


def _rows_from_products(client, products, flat):
    """Read any accepted ``products`` into validated rows."""
    if _is_dataset_ids(products):
        ids = [products] if isinstance(products, str) else products
        products = vstack([client.get_product_list(dataset_id) for dataset_id in ids])
    elif isinstance(products, Row):
        products = Table(products, masked=True)
    return subscription.load_rows(products, flat=flat)


def _apply_column_filters(rows, filters):
    # astroquery's own filter semantics (OR within a column, "!" negation, numeric ranges such as
    # size=">=1000"), applied to a table of the rows, so that ours stays a superset of astroquery's.
    if not filters or not rows:
        return rows
    missing = [name for name in filters if all(row.get(name) is None for row in rows)]
    if missing:
        raise InputError(f"cannot filter on {', '.join(map(repr, missing))}: no such column in the products")
    keep = mast_utils.apply_column_filters(subscription.rows_to_table(rows), filters)
    return [row for row, selected in zip(rows, keep) if selected]


def _run_with_token(client, jobs, *, verbose, **options):
    """`run_jobs` with the client's token and a progress bar that is closed whatever happens."""
    progress = make_progress(verbose)
    try:
        return run_jobs(jobs, auth=token_auth(_explicit_token(client), mast_conf.server, verbose=verbose),
                        progress=progress, **options)
    finally:
        if progress is not None:
            progress.close()


def download_jobs(client, jobs, *, download_dir=None, cache=True, max_workers=None, curl_flag=False,
                  verbose=True, executor=None, verify=False):
    """Run planned jobs with the client's token (or write them as a curl script); the status table.

    Shared by the ``download_products`` of `MastMissionsClass` and of
    `~astroquery_mastbulk.observations.ObservationsClass`: everything after planning is the same.

    Parameters
    ----------
    client : `MastMissionsClass` or `~astroquery_mastbulk.observations.ObservationsClass`
        Whose explicit token (if any) to use.
    jobs : list of `~astroquery_mastbulk.jobs.DownloadJob`
    download_dir, cache, max_workers, curl_flag, verbose, executor, verify
        As for `download_products`; ``download_dir`` also holds the ledger.

    Returns
    -------
    `~astropy.table.Table`
        The status table; with ``curl_flag``, one row naming the script written.
    """
    if curl_flag:
        from .curlscript import write_script_for_jobs
        return write_script_for_jobs(jobs, download_dir=download_dir)
    results = _run_with_token(client, jobs, verbose=verbose,
                              settings=engine_settings(max_workers=max_workers, cache=cache),
                              executor=executor, verify=verify,
                              ledger_dir=download_dir if download_dir is not None else ".")
    return results_table(results)


def download_products(self, products, *, download_dir=None, flat=False, cache=True, extension=None,
                      event_type=None, max_workers=None, curl_flag=False, verbose=True, executor=None,
                      verify=False, **filters):
    """Download data products: a MAST subscription notification, a product table, or dataset IDs.

    Transfers run concurrently, resume from partial files, retry transient failures and never
    leave a half-written file at a final path. One failed file never stops the others.

    Parameters
    ----------
    products : str, os.PathLike, file-like, list, `~astropy.table.Table` or `~astropy.table.Row`
        A notification JSON file (path or open file), a list of its rows (dicts), a product
        table (e.g. from ``get_product_list``) or row, or dataset ID(s) as astroquery accepts.
    download_dir : str or os.PathLike, optional
        Folder for the files; default the current folder.
    flat : bool, optional
        If True, put files directly into ``download_dir`` instead of
        ``mastDownload/<mission>/<fileset>/``.
    cache : bool, optional
        Default True: a file already on disk with the server's size is SKIPPED.
    extension : str or list of str, optional
        Keep only file names ending with these.
    event_type : str or list of str, optional
        Keep only these notification event types (``New``, ``Reprocessed``, ``Public``).
    max_workers : int, optional
        Files transferred at once; default ``astroquery_mastbulk.conf.max_workers`` (8).
    curl_flag : bool, optional
        If True, write a bash + curl script that downloads the files instead of downloading them.
    verbose : bool, optional
        Default True: show one progress bar on stderr. False prints nothing.
    executor : `concurrent.futures.Executor`, optional
        Run each transfer as a task on this executor (for example a Dask cluster's,
        ``client.get_executor()``), at most ``max_workers`` at once per host; see
        `~astroquery_mastbulk.distributed.run_transfers`. Default: threads in this process.
    verify : bool, optional
        If True, check the CHECKSUM/DATASUM keywords of each downloaded FITS file (where present)
        before it is renamed into place; a file failing them is fetched again, then reported ERROR.
    **filters
        Column filters as for astroquery's ``filter_products``.

    Returns
    -------
    `~astropy.table.Table` or None
        One row per requested product, in input order, with columns ``Local Path``, ``Status``
        (COMPLETE, SKIPPED or ERROR), ``Message``, ``URL`` and more; None (with a warning) if no
        product is left to download.
    """
    rows = _rows_from_products(self, products, flat)
    rows = _apply_column_filters(select_rows(rows, extension=extension, event_type=event_type), filters)
    if not rows:
        warnings.warn("No products to download.", NoResultsWarning)
        return None
    jobs = plan_jobs(rows, server=mast_conf.server, download_dir=download_dir, flat=flat,
                     default_mission=self.mission)
    return download_jobs(self, jobs, download_dir=download_dir, cache=cache, max_workers=max_workers,
                         curl_flag=curl_flag, verbose=verbose, executor=executor, verify=verify)


def download_file(self, uri, *, local_path=None, cache=True, verbose=True, mission=None):
    """Download one file by name (hst/jwst/roman) or ``mast:`` URI, as astroquery's ``download_file``.

    Parameters
    ----------
    uri : str
        Product file name or ``mast:`` URI.
    local_path : str or os.PathLike, optional
        File or folder to download to; default the file name in the current folder.
    cache : bool, optional
        Default True: skip a file already on disk with the server's size.
    verbose : bool, optional
        Show progress.
    mission : str, optional
        Mission whose endpoint serves the file; default the instance's mission.

    Returns
    -------
    status : str
        COMPLETE, SKIPPED or ERROR.
    msg : str or None
        The error message, if any.
    url : str or None
        The URL, when the download failed.
    """
    filename = Path(uri).name
    target = Path(local_path or filename)
    if not target.suffix:
        target = target / filename
    row = subscription.ProductRow(number=1, source="<download_file>", filename=filename,
                                  mission=mission or self.mission, uri=uri)
    jobs = plan_jobs([row], server=mast_conf.server, download_dir=target.parent, flat=True)
    result, = _run_with_token(self, jobs, verbose=verbose, settings=engine_settings(cache=cache))
    if result.status == ERROR:
        return result.status, result.message, result.job.url
    return result.status, None, None


class MastMissionsClass(_AstroqueryMissions):
    """astroquery's `~astroquery.mast.MastMissionsClass`, downloading on a concurrent, resumable engine.

    Every method but ``download_products``, ``download_file``, ``login``, ``logout`` and ``whoami`` is
    astroquery's own.

    Parameters
    ----------
    mission : str, optional
        Default mission (``hst``); each notification row's own mission takes precedence.
    mast_token : str, optional
        MAST API token; otherwise ``$MAST_API_TOKEN`` or the OS keyring supply one when needed.
    """

    def __init__(self, *, mission="hst", mast_token=None):
        self._mastbulk_token = mast_token
        super().__init__(mission=mission, mast_token=mast_token)
        # Queries (get_product_list...) go to conf.server as it is when they run, not at import.
        self._service_api_connection = ServiceConnection(self._session)
        self.mission = mission

    def __repr__(self):
        return f"<{type(self).__name__} mission={self.mission!r}>"

    def login(self, token=None, store_token=False, reenter_token=False):
        """Log in with a MAST API token, as astroquery's ``login``; the only request is ``{server}/whoami``.

        Parameters
        ----------
        token : str, optional
            The token; default ``$MAST_API_TOKEN``, then the OS keyring, then a hidden prompt
            (only when standard input is a terminal).
        store_token : bool, optional
            Also write the token to the OS keyring entry astroquery uses.
        reenter_token : bool, optional
            Prompt for a new token even if the environment or keyring holds one.

        Returns
        -------
        bool
            True (a rejected token raises).

        Raises
        ------
        `~astroquery_mastbulk.auth.LoginError`
            No token, a rejected one, an unreachable server or (``store_token``) no usable keyring.
        """
        server = mast_conf.server
        token, name = auth.login(token, store=store_token, reenter=reenter_token, server=server)
        self._mastbulk_token = token
        # astroquery's own queries read this cookie (exclusive-access metadata); unlike the one
        # astroquery sets, it is scoped to the configured server's host, so no other host gets it.
        parts = urlsplit(server)
        self._session.cookies.set("mast_token", token, domain=parts.hostname, secure=parts.scheme == "https")
        self._authenticated = True
        log.info("MAST token accepted: welcome %s", name)
        return True

    def logout(self, forget=False):
        """Forget this session's token; ``forget=True`` also deletes the one stored in the OS keyring.

        ``$MAST_API_TOKEN`` and (unless forgotten) the stored token still apply to later downloads.
        """
        super().logout()
        self._session.cookies.pop("mast_token", None)
        self._mastbulk_token = None
        if forget:
            auth.delete_stored_token()

    def whoami(self):
        """Who ``{server}/whoami`` says this session's token belongs to, as one line of text."""
        return auth.whoami(mast_conf.server, _explicit_token(self))

    download_products = download_products
    download_file = download_file


MastMissions = MastMissionsClass()

_ORIGINALS = {}


def _upgrades():
    """(astroquery class, our ``download_products``) pairs that `enable` installs."""
    from astroquery.mast import ObservationsClass as _AstroqueryObservations
    from .observations import download_products as observations_download_products
    return ((_AstroqueryMissions, download_products),
            (_AstroqueryObservations, observations_download_products))


def enable():
    """Give astroquery's own `~astroquery.mast.MastMissionsClass` and `~astroquery.mast.ObservationsClass`
    this package's ``download_products``.

    Objects created before or after the call both get it (the method is replaced on the class).
    `disable` puts astroquery's methods back exactly.
    """
    for cls, method in _upgrades():
        _ORIGINALS.setdefault(cls, cls.__dict__["download_products"])
        cls.download_products = method


def disable():
    """Undo `enable`: astroquery's original ``download_products`` methods are restored."""
    for cls, _method in _upgrades():
        original = _ORIGINALS.pop(cls, None)
        if original is not None:
            cls.download_products = original
