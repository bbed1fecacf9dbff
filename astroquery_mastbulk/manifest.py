"""Results → the status table users read, and manifest files on disk."""

import os

__all__ = ["STATUS_COLUMNS", "results_table", "write_manifest"]

#: The first columns of every status table, exactly as astroquery names them.
STATUS_COLUMNS = ("Local Path", "Status", "Message", "URL")


def results_table(results):
    """Build the status table, one row per requested product, in input order.

    Built column by column (no per-row appends), so 10,000 rows cost milliseconds.

    Parameters
    ----------
    results : list of `~astroquery_mastbulk.runner.JobResult`

    Returns
    -------
    `~astropy.table.Table`
        Columns ``Local Path``, ``Status`` (COMPLETE, SKIPPED or ERROR), ``Message``, ``URL``,
        then ``mission``, ``event_type``, ``filename`` and ``bytes`` (received in this run).
    """
    from astropy.table import Table

    def text(values):
        return ["" if value is None else str(value) for value in values]

    jobs = [result.job for result in results]
    columns = {
        "Local Path": text(job.path for job in jobs),
        "Status": [result.status for result in results],
        "Message": text(result.message for result in results),
        "URL": text(job.url for job in jobs),
        "mission": text(job.mission for job in jobs),
        "event_type": text(job.row.event_type for job in jobs),
        "filename": text(job.row.filename for job in jobs),
        "bytes": [int(result.bytes_received) for result in results],
    }
    return Table(columns, dtype=[str, "U8", str, str, str, str, str, "int64"] if results else None)


def write_manifest(table, path):
    """Write a status table to ``path``: ECSV, or HTML when the name ends in ``.html``/``.htm``.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A status table from `results_table`.
    path : str or os.PathLike
        Where to write; overwritten if present.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    fmt = "html" if suffix in (".html", ".htm") else "ascii.ecsv"
    table.write(path, format=fmt, overwrite=True)
