"""Rows → jobs: per-mission endpoints, astroquery's layout, path safety, selection."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from astroquery_mastbulk import load_rows
from astroquery_mastbulk.jobs import plan_jobs, select_rows

SERVER = "https://mast.example.stsci.edu"


def test_sample_jobs(sample_path):
    jobs = plan_jobs(load_rows(sample_path), server=SERVER, download_dir="d",
                     now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert jobs[0].url == (SERVER + "/search/jwst/api/v0.1/retrieve_product?product_name="
                           "jw05893001001_02201_00001_mirimage_o001_crf.fits")
    assert jobs[0].path == Path("d/mastDownload/jwst/jw05893001001_02201_00001/"
                                "jw05893001001_02201_00001_mirimage_o001_crf.fits")
    assert [j.needs_token for j in jobs] == [False, True, True]
    assert jobs[0].transfer.replace_if_older_than == jobs[0].row.archived_date.timestamp()
    assert jobs[1].transfer.replace_if_older_than is None


def test_missions_and_quoting():
    rows = load_rows([
        {"filename": "a b&c.fits", "fileset": "s", "mission": "HST"},
        {"filename": "x.fits", "fileset": "s", "mission": "Roman_CGI"},
        {"filename": "h.fits", "fileset": "s", "mission": "hlsp", "uri": "mast:HLSP/foo/h.fits"},
        {"filename": "k.fits", "fileset": "s", "mission": "tess"},
        {"filename": "n.fits", "fileset": "s"},
    ])
    jobs = plan_jobs(rows, server=SERVER + "/", default_mission="jwst")
    assert jobs[0].url.endswith("/search/hst/api/v0.1/retrieve_product?product_name=a%20b%26c.fits")
    assert "/search/roman_cgi/" in jobs[1].url
    assert jobs[2].url == SERVER + "/api/v0.1/Download/file?uri=mast:HLSP/foo/h.fits"
    assert jobs[2].path == Path("mastDownload/hlsp/s/h.fits")
    assert jobs[3].refused and "mast: URI" in jobs[3].refused
    assert jobs[4].mission == "jwst"


@pytest.mark.parametrize("field, value, reason", [
    ("filename", "/etc/passwd", "absolute path"),
    ("filename", "../evil.fits", "path separator"),
    ("filename", "..", "'..'"),
    ("filename", "a\\b.fits", "path separator"),
    ("filename", "a\x00b.fits", "control characters"),
    ("filename", "a\nb.fits", "control characters"),
    ("fileset", "..", "'..'"),
    ("fileset", "C:evil", "absolute path"),
    ("mission", "../x", "not a mission name"),
])
def test_unsafe_rows_are_refused(field, value, reason):
    record = {"filename": "ok.fits", "fileset": "set", "mission": "jwst", field: value}
    job, = plan_jobs(load_rows([record]), server=SERVER, download_dir="/tmp/x")
    assert job.refused and reason in job.refused and job.path is None


def test_same_path_different_url_refused():
    rows = load_rows([{"filename": "a.fits", "fileset": "s", "mission": "hst"},
                      {"filename": "a.fits", "fileset": "s", "mission": "hst"},
                      {"filename": "a.fits", "fileset": "x", "mission": "jwst"},
                      {"filename": "a.fits", "fileset": "x", "mission": "jwst"}])
    jobs = plan_jobs(rows, server=SERVER, flat=True)
    assert [bool(j.refused) for j in jobs] == [False, False, True, True]


def test_selection(sample_path):
    rows = load_rows(sample_path)
    assert [r.event_type for r in select_rows(rows, event_type="new")] == ["New"]
    assert len(select_rows(rows, event_type=["New", "Public"])) == 2
    assert len(select_rows(rows, extension="rateints.fits")) == 1
