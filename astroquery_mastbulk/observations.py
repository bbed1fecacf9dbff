"""astroquery's `ObservationsClass` on the same engine: product tables to disk, and product lists
fetched chunk by chunk.

>>> from astroquery_mastbulk import Observations                          # doctest: +SKIP
>>> products = Observations.get_product_list_chunked(matched_obs)          # doctest: +SKIP
>>> Observations.download_products(products, productType="SCIENCE", extension="fits")  # doctest: +SKIP
"""

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from os.path import basename
from pathlib import Path

import requests
from astropy.table import Row, Table, vstack
from astroquery.exceptions import InvalidQueryError, NoResultsWarning
from astroquery.mast import conf as mast_conf
from astroquery.mast import utils as mast_utils
from astroquery.mast.observations import ObservationsClass as _AstroqueryObservations

from . import subscription
from .connections import PortalConnection
from .defaults import engine_settings
from .errors import InputError, MastBulkError
from .jobs import DownloadJob, _refuse_path_clashes, download_file_url, unsafe_name_reason
from .logger import log
from .missions import download_jobs

__all__ = ["ObservationsClass", "Observations", "get_product_list_chunked", "plan_product_jobs"]

#: What a timed-out product-list request looks like: astroquery's own Mashup time limit, a
#: connection timeout or drop, or a gateway giving up (502/503/504).
_TIMEOUT_ERRORS = (TimeoutError, requests.Timeout, requests.ConnectionError)
_TIMEOUT_STATUS = frozenset({502, 503, 504})


# -- planning: product table → jobs -----------------------------------------------------------

def _product_records(products):
    """Rows of an Observations product table, keyed as `~astroquery_mastbulk.subscription` reads."""
    names = products.colnames
    renamed = {"productFilename": "filename", "obs_id": "fileset", "obs_collection": "mission",
               "dataURI": "uri"}
    columns = [products[name].tolist() for name in names]
    records = []
    for values in zip(*columns):
        record = {renamed.get(name, name): value for name, value in zip(names, values)
                  if name not in ("filename", "fileset", "mission", "uri")}
        if isinstance(record.get("filename"), str):
            record["filename"] = basename(record["filename"])  # as astroquery does
        records.append(record)
    return records


def _plan_product(row, *, server, base_dir, flat):
    checks = [(row.filename, "productFilename")]
    if not flat:
        checks += [(row.mission or "", "obs_collection"), (row.fileset, "obs_id")]
    reasons = [unsafe_name_reason(value, field) if value else f"{field} is empty" for value, field in checks]
    if not (row.uri or "").startswith("mast:"):
        reasons.append(f"dataURI {row.uri!r} is not a mast: URI")
    reason = next((reason for reason in reasons if reason), None)
    if reason:
        return DownloadJob(row, mission=row.mission, refused=reason)
    folder = base_dir if flat else base_dir / "mastDownload" / row.mission / row.fileset
    return DownloadJob(row, download_file_url(server, row.uri), folder / row.filename, row.mission)


def plan_product_jobs(products, *, server, download_dir=None, flat=False):
    """Turn an Observations product table into download jobs, one per row, in order.

    Every file comes from ``{server}/api/v0.1/Download/file?uri=<dataURI>`` and lands where
    astroquery's ``Observations.download_products`` puts it:
    ``download_dir/mastDownload/<obs_collection>/<obs_id>/<productFilename>``
    (``flat=True``: ``download_dir/<productFilename>``).

    Parameters
    ----------
    products : `~astropy.table.Table`
        As ``Observations.get_product_list`` returns it: ``productFilename``, ``dataURI``,
        ``obs_collection`` and ``obs_id`` columns (the last two only unless ``flat``).
    server : str
        Base URL of MAST (``astroquery.mast.conf.server``).
    download_dir : str or os.PathLike, optional
        Default the current folder.
    flat : bool, optional
        Put every file straight into ``download_dir``.

    Returns
    -------
    list of `~astroquery_mastbulk.jobs.DownloadJob`
        A row that is unsafe (a name with ``..`` or a separator) or has no ``mast:`` URI is
        refused, with the reason, and written nowhere.

    Raises
    ------
    `~astroquery_mastbulk.errors.InputError`
        If a row has no ``productFilename`` (or, unless ``flat``, no ``obs_id``).
    """
    base_dir = Path(download_dir if download_dir is not None else ".")
    rows = subscription.load_rows(_product_records(products), flat=flat)
    return _refuse_path_clashes([_plan_product(row, server=server, base_dir=base_dir, flat=flat)
                                 for row in rows])


# -- chunked product-list lookup ------------------------------------------------------------

def _chunks(observations, size):
    if isinstance(observations, Row):
        observations = observations.table[observations.index:observations.index + 1]
    if isinstance(observations, str):
        observations = [observations]
    if not isinstance(observations, Table):
        observations = [str(obsid) for obsid in observations]
    return [observations[start:start + size] for start in range(0, len(observations), size)]


def _fetch_chunk(client, chunk, settings):
    """One chunk's product list, retried with backoff when the request times out."""
    attempts = settings.retries + 1
    for attempt in range(attempts):
        try:
            return client.get_product_list(chunk)
        except InvalidQueryError:  # every observation of the chunk was filtered out (TESS/TICA FFIs)
            return None
        except (requests.HTTPError, *_TIMEOUT_ERRORS) as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if isinstance(err, requests.HTTPError) and status not in _TIMEOUT_STATUS:
                raise
            if attempt + 1 == attempts:
                first, last = _obsid(chunk[0]), _obsid(chunk[-1])
                raise MastBulkError(f"product list of observations {first}..{last} failed after "
                                    f"{attempts} attempts: {type(err).__name__}: {err}", cause=err) from err
            log.info("product list request timed out (%s); retrying", type(err).__name__)
            time.sleep(min(settings.backoff_max, settings.backoff * 2 ** attempt))


def _obsid(item):
    return item["obsid"] if hasattr(item, "colnames") else item


def _clone(client):
    """A client of its own for one thread, logged in as ``client`` (same cookies, same token)."""
    clone = ObservationsClass()
    clone._session.cookies.update(client._session.cookies)
    return clone


def _fetch_all(client, chunks, max_workers, settings):
    # astroquery's clients are not thread-safe: a query sets the instance's "current service"
    # and reads it back while parsing, and a requests Session is not meant to be shared by
    # threads. So each thread queries through a client of its own (same token), and a client
    # we cannot copy faithfully (astroquery's own, a user's subclass) is used sequentially.
    # The first chunk goes alone, so the column configuration is fetched once, then cached.
    first = _fetch_chunk(client, chunks[0], settings)
    if max_workers <= 1 or len(chunks) == 1 or type(client) is not ObservationsClass:
        return [first] + [_fetch_chunk(client, chunk, settings) for chunk in chunks[1:]]
    local, clones, lock = threading.local(), [], threading.Lock()

    def fetch(chunk):
        if not hasattr(local, "client"):
            local.client = _clone(client)
            with lock:
                clones.append(local.client)
        return _fetch_chunk(local.client, chunk, settings)

    try:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mastbulk-lists") as pool:
            return [first] + list(pool.map(fetch, chunks[1:]))
    finally:
        for clone in clones:
            clone._session.close()


def get_product_list_chunked(observations, *, chunk_size=5, max_workers=4, client=None):
    """Product lists of many observations, fetched a few observations per request, deduplicated.

    MAST's advice for whole programs, as one call: asking for many observations' products at
    once risks a timeout, one at a time is slow, so ask for ``chunk_size`` at a time (five, as
    MAST recommends), ``max_workers`` requests at once; retry a request that times out; stack
    the lists and keep each ``productFilename`` once (the first), in input order.

    Parameters
    ----------
    observations : `~astropy.table.Table`, `~astropy.table.Row`, str or list of str
        Observations as ``Observations.query_criteria`` returns them, or their ``obsid`` values.
    chunk_size : int, optional
        Observations per request; default 5.
    max_workers : int, optional
        Requests at once; default 4. 1 fetches the chunks one after another.
    client : `~astroquery.mast.ObservationsClass`, optional
        Whose session (and login) to use; default this package's ``Observations``.

    Returns
    -------
    `~astropy.table.Table`
        The products, one row per distinct ``productFilename``.

    Raises
    ------
    `~astroquery_mastbulk.errors.MastBulkError`
        If a chunk still times out after ``astroquery_mastbulk.conf.retries`` retries; other
        errors (a rejected query) are raised as astroquery raises them.
    """
    if int(chunk_size) < 1 or int(max_workers) < 1:
        raise InputError(f"chunk_size and max_workers must be at least 1, not {chunk_size}, {max_workers}")
    chunks = _chunks(observations, int(chunk_size))
    if not chunks:
        raise InputError("no observations given")
    tables = _fetch_all(client if client is not None else Observations, chunks, int(max_workers),
                        engine_settings())
    tables = [table for table in tables if table is not None and len(table)]
    if not tables:
        warnings.warn("The observations have no products.", NoResultsWarning)
        return Table()
    merged = vstack(tables, metadata_conflicts="silent")
    return mast_utils.remove_duplicate_products(merged, "productFilename")


# -- download_products ------------------------------------------------------------------------

def download_products(self, products, *, download_dir=None, flat=False, cache=True, curl_flag=False,
                      mrp_only=False, cloud_only=False, verbose=True, max_workers=None, executor=None,
                      verify=False, **filters):
    """Download data products: a product table, or the products of observations (obsids).

    astroquery's ``Observations.download_products``, on this package's engine: files download
    concurrently, resume, retry transient failures, are never half-written at their final path,
    and the MAST token goes only to trusted hosts. One failed file never stops the others.

    Parameters
    ----------
    products : `~astropy.table.Table`, `~astropy.table.Row`, str or list of str
        A product table (as ``get_product_list`` or `get_product_list_chunked` returns it), or
        obsid(s), whose product lists are then fetched in chunks.
    download_dir : str or os.PathLike, optional
        Default the current folder.
    flat : bool, optional
        Put files straight into ``download_dir``, not ``mastDownload/<obs_collection>/<obs_id>/``
        (honoured by the curl script too).
    cache : bool, optional
        Default True: a file already on disk with the server's size is SKIPPED.
    curl_flag : bool, optional
        Write a bash + curl script for the files instead of downloading them (no request to MAST).
    mrp_only : bool, optional
        Only "Minimum Recommended Products".
    cloud_only : bool, optional
        Accepted for compatibility; astroquery 0.4.11's cloud access is non-operational.
    verbose : bool, optional
        Default True: show progress on stderr.
    max_workers : int, optional
        Files at once (per host, with ``executor``); default ``astroquery_mastbulk.conf.max_workers``.
    executor : `concurrent.futures.Executor`, optional
        Run each transfer as a task on this executor, such as a Dask cluster's
        ``client.get_executor()``; see `~astroquery_mastbulk.distributed.run_transfers`.
    verify : bool, optional
        Check the CHECKSUM/DATASUM keywords of each FITS file before it is renamed into place.
    **filters
        astroquery's product filters: ``extension`` and any product column
        (``productType="SCIENCE"``, ``size=">=1000"``...), as for ``filter_products``.

    Returns
    -------
    `~astropy.table.Table` or None
        One row per product (after filtering and removing duplicate ``dataURI``), in order:
        ``Local Path``, ``Status`` (COMPLETE, SKIPPED or ERROR), ``Message``, ``URL`` and more;
        None, with a warning, if no product is left.
    """
    if isinstance(products, Row):
        products = Table(products, masked=True)
    if not isinstance(products, Table):
        products = get_product_list_chunked(products, client=self)
    if len(products):
        products = self.filter_products(products, mrp_only=mrp_only, **filters)
        products = mast_utils.remove_duplicate_products(products, "dataURI")
    if not len(products):
        warnings.warn("No products to download.", NoResultsWarning)
        return None
    jobs = plan_product_jobs(products, server=mast_conf.server, download_dir=download_dir, flat=flat)
    return download_jobs(self, jobs, download_dir=download_dir, cache=cache, max_workers=max_workers,
                         curl_flag=curl_flag, verbose=verbose, executor=executor, verify=verify)


class ObservationsClass(_AstroqueryObservations):
    """astroquery's `~astroquery.mast.ObservationsClass`, downloading on a concurrent, resumable engine.

    Every method but ``download_products`` is astroquery's own; ``get_product_list_chunked``
    is added. Queries go to ``astroquery.mast.conf.server`` as it is when they run.

    Parameters
    ----------
    mast_token : str, optional
        MAST API token; otherwise ``$MAST_API_TOKEN`` or the OS keyring supply one when needed.
    """

    def __init__(self, *, mast_token=None):
        self._mastbulk_token = mast_token
        super().__init__(mast_token=mast_token)
        self._portal_api_connection = PortalConnection(self._session)

    def __repr__(self):
        return f"<{type(self).__name__}>"

    def get_product_list_chunked(self, observations, *, chunk_size=5, max_workers=4):
        """Product lists fetched ``chunk_size`` observations at a time, merged and deduplicated.

        See `~astroquery_mastbulk.observations.get_product_list_chunked`.
        """
        return get_product_list_chunked(observations, chunk_size=chunk_size, max_workers=max_workers,
                                        client=self)

    download_products = download_products


Observations = ObservationsClass()
