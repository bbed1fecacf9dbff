"""Reading MAST subscription notifications (and other product lists) into validated rows.

This module knows JSON and tables, not HTTP. It imports astropy only when the input or
the caller needs a `~astropy.table.Table`, so the command line stays quick to start.
"""

import json
import os
import re
from collections import namedtuple
from datetime import datetime, timezone
from functools import wraps

from .errors import InputError

__all__ = ["ProductRow", "load_rows", "read_subscription", "parse_mast_date", "NOTIFICATION_FIELDS"]

#: The fields of a row of a MAST subscription notification, in MAST's order.
NOTIFICATION_FIELDS = ("event_id", "mission", "fileset", "filename", "program", "event_type",
                       "archived_date", "public_release_date")
DATE_FIELDS = ("archived_date", "public_release_date")
# Input keys that fill ProductRow's own fields; every other key goes to ``extra``.
_ROW_KEYS = frozenset(NOTIFICATION_FIELDS) | {"dataset", "uri", "dataURI"}

# MAST writes 0, 3 or 7 fractional digits; datetime.fromisoformat on Python 3.10 accepts
# only 3 or 6, so the fraction is normalised here before parsing.
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


def parse_mast_date(text):
    """Parse a MAST timestamp such as ``2026-03-30T17:54:12.7510000`` as an aware UTC datetime.

    Parameters
    ----------
    text : str
        ISO 8601 date and time with 0 to 9 fractional digits, optionally ``Z`` or an offset;
        a timestamp with no offset is UTC, as MAST writes them.

    Returns
    -------
    datetime.datetime
        Timezone-aware, in UTC.

    Raises
    ------
    ValueError
        If ``text`` is not such a timestamp.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO date and time: {text!r}")
    day, clock, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    if zone in (None, "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    return datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(timezone.utc)


_ROW_FIELDS = ("number", "source", "filename", "fileset", "mission", "event_id", "program", "event_type",
               "archived_date", "public_release_date", "uri", "extra")


_RowFields = namedtuple("ProductRow", _ROW_FIELDS, defaults=(None,) * 9)


class ProductRow(_RowFields):
    """One product to download, as read from a notification or a product table (immutable).

    ``number`` is the 1-based row number in ``source``, for error messages. ``filename``,
    ``fileset``, ``mission``, ``event_id``, ``program``, ``event_type`` and ``uri`` are the row's
    fields; ``archived_date`` and ``public_release_date`` are UTC datetimes. ``extra`` holds the
    row's other columns (used by column filters), a dict.
    """

    __slots__ = ()

    @wraps(_RowFields.__new__)  # help() and the docs then show the fields
    def __new__(cls, *args, **kwargs):
        row = super().__new__(cls, *args, **kwargs)
        return row if row.extra is not None else row._replace(extra={})

    def __repr__(self):
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields[:-1], self))
        return f"ProductRow({shown})"  # without ``extra``: a table row may carry dozens of columns

    def get(self, column, default=None):
        """Value of a column by its input name (notification field or extra column)."""
        if column in self._fields and column != "extra":
            return getattr(self, column)
        return self.extra.get(column, default)


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value, where, name, required):
    if type(value) is str:  # nearly always: this runs for every field of every row
        stripped = value.strip()
        if stripped:
            return stripped
    if _blank(value):
        if required:
            raise InputError(f"{where}: field '{name}' is missing or empty")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputError(f"{where}: field '{name}' must be text, not {type(value).__name__}")
    return str(value).strip()


def _date(value, where, name):
    if _blank(value):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        return parse_mast_date(str(value))
    except ValueError:
        raise InputError(f"{where}: field '{name}' is not a date: {value!r}") from None


def make_row(record, number, source, *, flat=False):
    """Validate one mapping into a `ProductRow`.

    Parameters
    ----------
    record : dict-like
        One product's fields (notification names; ``dataset`` and ``dataURI`` also accepted).
    number : int
        Its 1-based row number in ``source``.
    source : str
        Where it was read, for error messages.
    flat : bool, optional
        If True, no ``fileset`` is required.

    Returns
    -------
    ProductRow

    Raises
    ------
    InputError
        Naming the source, the row and the field at fault.
    """
    where = f"{source}: row {number}"
    if not hasattr(record, "get"):
        raise InputError(f"{where}: expected an object with named fields, got {type(record).__name__}")
    fileset = record.get("fileset")
    if _blank(fileset):
        fileset = record.get("dataset")
    row = ProductRow(
        number=number, source=source,
        filename=_text(record.get("filename"), where, "filename", required=True),
        fileset=_text(fileset, where, "fileset", required=not flat),
        mission=_text(record.get("mission"), where, "mission", required=False),
        event_id=_text(record.get("event_id"), where, "event_id", required=False),
        program=record.get("program"),
        event_type=_text(record.get("event_type"), where, "event_type", required=False),
        archived_date=_date(record.get("archived_date"), where, "archived_date"),
        public_release_date=_date(record.get("public_release_date"), where, "public_release_date"),
        uri=_text(record.get("uri") or record.get("dataURI"), where, "uri", required=False),
        extra={key: value for key, value in record.items() if key not in _ROW_KEYS},
    )
    return row


def _decode_json(data, source):
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise InputError(f"{source}: not UTF-8 text (byte {err.start}): "
                         "is this a MAST notification?") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: malformed JSON at line {err.lineno} "
                         f"column {err.colno}: {err.msg}") from None
    if not isinstance(records, list):
        raise InputError(f"{source}: expected a JSON list of products, got a JSON {type(records).__name__}")
    return records


def _read_source(source):
    """Return (records, name) for a path, an open file, or in-memory rows."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(name, "rb") as stream:
                return _decode_json(stream.read(), name), name
        except OSError as err:
            raise InputError(f"{name}: cannot read notification: {err.strerror or err}") from None
    if type(source).__name__ in ("Table", "QTable", "Row"):  # before "read": Table has a read method
        return _records_from_table(source), "<table>"
    if hasattr(source, "read"):
        name = getattr(source, "name", None) or "<stream>"
        return _decode_json(source.read(), name), str(name)
    if isinstance(source, (list, tuple)):
        return list(source), "<rows>"
    raise InputError(f"cannot read products from a {type(source).__name__}: "
                     "give a path, an open file, a list of rows or an astropy Table")


def _records_from_table(table):
    from astropy.table import Row
    from astropy.time import Time
    if isinstance(table, Row):
        table = table.table[table.index:table.index + 1]
    columns = {name: (list(col.isot) if isinstance(col, Time) else col.tolist())
               for name, col in table.columns.items()}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def load_rows(source, *, flat=False):
    """Read and validate products into a list of `ProductRow`, in input order.

    Parameters
    ----------
    source : str, os.PathLike, file-like, list of dict, `~astropy.table.Table` or `~astropy.table.Row`
        A MAST subscription notification (JSON list of products) by path or open file, or the rows
        themselves.
    flat : bool, optional
        If True, rows need no ``fileset``/``dataset`` (files go straight into the download folder).

    Returns
    -------
    list of ProductRow

    Raises
    ------
    InputError
        One line naming the file, the row and the field at fault.
    """
    records, name = _read_source(source)
    if not records:
        raise InputError(f"{name}: the notification lists no products")
    return [make_row(record, number, name, flat=flat) for number, record in enumerate(records, start=1)]


def read_subscription(source, *, flat=False):
    """Read a MAST subscription notification into an astropy Table.

    Dates become `~astropy.time.Time` columns (UTC); ``event_type`` is a plain string column,
    so ``table.group_by("event_type")`` groups the New, Reprocessed and Public products.

    Parameters
    ----------
    source : str, os.PathLike, file-like, list of dict, `~astropy.table.Table` or `~astropy.table.Row`
        The notification, as for `load_rows`.
    flat : bool, optional
        If True, rows need no ``fileset``.

    Returns
    -------
    `~astropy.table.Table`
        One row per product, with the notification's eight columns first.

    Examples
    --------
    >>> from astroquery_mastbulk import read_subscription
    >>> from astroquery_mastbulk.data import sample_notification
    >>> table = read_subscription(sample_notification())
    >>> sorted(set(table["event_type"].tolist()))
    ['New', 'Public', 'Reprocessed']
    """
    return rows_to_table(load_rows(source, flat=flat))


def rows_to_table(rows):
    """Turn `ProductRow` objects into an astropy Table with Time columns (built column-wise).

    Parameters
    ----------
    rows : list of ProductRow

    Returns
    -------
    `~astropy.table.Table`
        The notification's eight columns, then each extra column whose values are all
        text or numbers.
    """
    from astropy.table import MaskedColumn, Table
    from astropy.time import Time

    table = Table()
    for name in NOTIFICATION_FIELDS:
        values = [getattr(row, name) for row in rows]
        if name in DATE_FIELDS:
            table[name] = _time_column(values, Time)
        elif name == "program":
            table[name] = _program_column(values, MaskedColumn)
        else:
            table[name] = MaskedColumn(["" if v is None else v for v in values],
                                       mask=[v is None for v in values])
    for name in sorted({key for row in rows for key in row.extra}):
        values = [row.extra.get(name) for row in rows]
        if all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            table[name] = values
    return table


def _time_column(values, Time):
    known = [v for v in values if v is not None]
    if len(known) == len(values):
        return Time([v.replace(tzinfo=None) for v in values], scale="utc", format="datetime")
    import numpy as np
    filler = known[0].replace(tzinfo=None) if known else datetime(2000, 1, 1)
    column = Time([filler if v is None else v.replace(tzinfo=None) for v in values], scale="utc",
                  format="datetime")
    column[np.array([v is None for v in values])] = np.ma.masked  # where a row gave no date
    return column


def _program_column(values, MaskedColumn):
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return values
    return MaskedColumn(["" if v is None else str(v) for v in values], mask=[v is None for v in values])


def _size(row):
    """The row's ``size`` column as an int, or None when absent or not a number."""
    value = row.get("size")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # "n/a", NaN, inf
        return None


def summarize(rows, *, now=None):
    """Count a notification's products by event type, mission and program.

    Parameters
    ----------
    rows : list of ProductRow
        As returned by `load_rows`.
    now : datetime.datetime, optional
        The time against which future public release dates (EAP files) are judged; default now.

    Returns
    -------
    dict
        ``products``, ``by_event_type``, ``by_mission``, ``by_program`` (counts), ``eap_files``
        (file names still under exclusive access), ``archived_oldest`` / ``archived_newest`` (ISO text);
        ``bytes`` and ``bytes_by_event_type`` / ``bytes_by_mission`` / ``bytes_by_program`` sum the
        rows' ``size`` column where there is one (``bytes`` is None, the others empty, when no row
        has a size: MAST's notifications carry none, product tables do).
    """
    now = now or datetime.now(timezone.utc)
    count = {"by_event_type": {}, "by_mission": {}, "by_program": {}}
    nbytes = {"bytes_by_event_type": {}, "bytes_by_mission": {}, "bytes_by_program": {}}
    total = None  # stays None when no row has a size
    for row in rows:
        size = _size(row)
        if size is not None:
            total = (total or 0) + size
        for key, value in (("by_event_type", row.event_type), ("by_mission", row.mission),
                           ("by_program", row.program)):
            label = "unknown" if value is None else str(value)
            count[key][label] = count[key].get(label, 0) + 1
            if size is not None:
                nbytes["bytes_" + key][label] = nbytes["bytes_" + key].get(label, 0) + size
    dates = sorted(row.archived_date for row in rows if row.archived_date)
    return {
        "products": len(rows), **count,
        "bytes": total, **nbytes,
        "eap_files": [row.filename for row in rows
                      if row.public_release_date and row.public_release_date > now],
        "archived_oldest": dates[0].isoformat() if dates else None,
        "archived_newest": dates[-1].isoformat() if dates else None,
    }
