"""Downloads through a real Dask cluster: two worker processes write into one shared folder."""

import json
import os
import time

import pytest

from astroquery_mastbulk import MastMissions, load_rows

from helpers import assert_file_matches, leftovers, most_at_once

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_client():
    # Loopback only, and the scheduler's HTTP port chosen free (its default, 8787, may be taken by
    # another cluster, which dask reports with a warning).
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster:
        with distributed.Client(cluster) as client:
            yield client


def notification(path, n):
    rows = [{"event_id": str(i), "mission": "jwst" if i % 2 else "hst", "fileset": f"set{i % 4}",
             "filename": f"f{i:03d}_cal.fits", "program": 5105, "event_type": "New",
             "archived_date": "2026-04-22T14:35:23.123", "public_release_date": "2026-01-01T00:00:00"}
            for i in range(n)]
    path.write_text(json.dumps(rows))
    return path


def test_notification_on_a_local_cluster(server, tmp_path, monkeypatch, dask_client):
    source = notification(tmp_path / "event.json", 24)
    server.latency = 0.05  # so that tasks overlap and both workers get some
    server.missing.add("f005_cal.fits")
    monkeypatch.chdir(tmp_path)  # the workers' folder is another: paths must travel absolute
    start = time.monotonic()
    try:
        manifest = MastMissions.download_products(source, download_dir="shared", max_workers=3, verbose=False,
                                                  executor=dask_client.get_executor())
    finally:
        server.latency = 0.0
    assert list(manifest["filename"]) == [row.filename for row in load_rows(source)]
    assert list(manifest["Status"]) == ["ERROR" if i == 5 else "COMPLETE" for i in range(24)]
    assert "HTTP 404" in manifest["Message"][5]
    for row in manifest[manifest["Status"] == "COMPLETE"]:
        assert row["Local Path"].startswith(os.path.join("shared", "mastDownload", row["mission"]))
        assert_file_matches(server, tmp_path / row["Local Path"])
    gets = [r for r in server.requests(method="GET") if r.started >= start]
    assert {r.name for r in gets} == set(manifest["filename"])
    pids = {record.pid for record in gets}
    assert len(pids) >= 2 and str(os.getpid()) not in pids  # the workers fetched, not this process
    assert most_at_once(gets, start) <= 3  # the per-host cap, across the whole cluster
    assert leftovers(tmp_path) == []
