"""Reading notifications: every accepted input shape, MAST's three date formats, clear errors."""

import io
import json
import pathlib
from datetime import datetime, timezone

import pytest
from astropy.table import Table
from astropy.time import Time

from astroquery_mastbulk import InputError, load_rows, read_subscription
from astroquery_mastbulk.subscription import parse_mast_date, summarize


def test_sample_three_date_formats(sample_path):
    rows = load_rows(sample_path)
    assert [r.archived_date for r in rows] == [
        datetime(2025, 12, 3, 19, 44, 10, 707000, tzinfo=timezone.utc),
        datetime(2026, 3, 30, 17, 53, 19, 695000, tzinfo=timezone.utc),
        datetime(2026, 3, 30, 17, 54, 12, 751000, tzinfo=timezone.utc)]
    assert rows[2].public_release_date == datetime(2026, 3, 30, 17, 53, 13, tzinfo=timezone.utc)
    assert [r.event_type for r in rows] == ["Reprocessed", "New", "Public"]
    assert rows[0].program == 5893 and rows[0].mission == "JWST"


@pytest.mark.parametrize("text, expected", [
    ("2026-03-30T17:54:12", datetime(2026, 3, 30, 17, 54, 12, tzinfo=timezone.utc)),
    ("2026-03-30T17:54:12.7510000", datetime(2026, 3, 30, 17, 54, 12, 751000, tzinfo=timezone.utc)),
    ("2026-03-30 17:54:12.5Z", datetime(2026, 3, 30, 17, 54, 12, 500000, tzinfo=timezone.utc)),
    ("2026-03-30T19:54:12+02:00", datetime(2026, 3, 30, 17, 54, 12, tzinfo=timezone.utc)),
])
def test_parse_mast_date(text, expected):
    assert parse_mast_date(text) == expected


def test_every_input_shape_gives_the_same_rows(sample_path):
    expected = [(r.filename, r.fileset, r.event_type) for r in load_rows(sample_path)]
    records = json.loads(pathlib.Path(sample_path).read_text())
    table = read_subscription(sample_path)
    with open(sample_path, "rb") as stream:
        from_stream = load_rows(stream)
    for source in (pathlib.Path(sample_path), records, table, io.StringIO(json.dumps(records))):
        assert [(r.filename, r.fileset, r.event_type) for r in load_rows(source)] == expected
    assert [(r.filename, r.fileset, r.event_type) for r in from_stream] == expected
    assert load_rows(table[1])[0].filename == expected[1][0]


def test_any_suffix(sample_path, tmp_path):
    mail = tmp_path / "event_metadata_jwst-program-5105_hourly_20260422_143523.attachment"
    mail.write_bytes(pathlib.Path(sample_path).read_bytes())
    assert len(load_rows(mail)) == 3


def test_table_reader_registered(sample_path):
    table = Table.read(sample_path, format="mast.subscription")
    assert table.colnames[:8] == ["event_id", "mission", "fileset", "filename", "program", "event_type",
                                  "archived_date", "public_release_date"]
    assert isinstance(table["archived_date"], Time) and table["archived_date"].scale == "utc"
    assert table["archived_date"][2].isot == "2026-03-30T17:54:12.751"
    groups = table.group_by("event_type")
    assert list(groups.groups.keys["event_type"]) == ["New", "Public", "Reprocessed"]


def _write(tmp_path, data, name="n.json"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("content, fragment", [
    ("[{\"filename\": \"a.fits\"", "malformed JSON at line 1"),
    ("{\"filename\": \"a.fits\"}", "expected a JSON list of products, got a JSON dict"),
    ("[]", "lists no products"),
    (b"\xff\xfe[\x00]", "not UTF-8"),
    ("[{\"fileset\": \"x\"}]", "row 1: field 'filename' is missing"),
    ("[{\"filename\": \"a.fits\", \"fileset\": \"x\"}, {\"filename\": \"b.fits\"}]",
     "row 2: field 'fileset' is missing"),
    ("[{\"filename\": \"a.fits\", \"fileset\": \"x\", \"archived_date\": \"yesterday\"}]",
     "row 1: field 'archived_date' is not a date"),
    ("[{\"filename\": [1], \"fileset\": \"x\"}]", "row 1: field 'filename' must be text"),
    ("[3]", "row 1: expected an object"),
])
def test_bad_input_is_one_clear_line(tmp_path, content, fragment):
    path = _write(tmp_path, content)
    with pytest.raises(InputError) as info:
        load_rows(path)
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_missing_file_and_flat(tmp_path):
    with pytest.raises(InputError, match="cannot read notification"):
        load_rows(tmp_path / "nope.json")
    rows = load_rows([{"filename": "a.fits"}], flat=True)
    assert rows[0].fileset is None


def test_dataset_column_stands_for_fileset():
    rows = load_rows([{"filename": "a.fits", "dataset": "ds1", "size": 10}])
    assert rows[0].fileset == "ds1" and rows[0].get("size") == 10


def test_summary(sample_path):
    rows = load_rows(sample_path)
    summary = summarize(rows, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert summary["by_event_type"] == {"Reprocessed": 1, "New": 1, "Public": 1}
    assert summary["by_program"] == {"5893": 1, "5105": 2}
    assert summary["eap_files"] == [rows[1].filename, rows[2].filename]
    assert summary["archived_oldest"].startswith("2025-12-03T19:44:10.707")


def test_missing_dates_are_masked_in_table():
    table = read_subscription([{"filename": "a.fits", "fileset": "s", "archived_date": "2026-01-02T03:04:05"},
                               {"filename": "b.fits", "fileset": "s"}])
    assert table["archived_date"][0].isot == "2026-01-02T03:04:05.000"
    assert table["archived_date"].mask.tolist() == [False, True]
    assert table["public_release_date"].mask.all()
