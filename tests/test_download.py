"""MastMissions.download_products against the local MAST server, with real failures injected."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from astropy.table import Table

from astroquery_mastbulk import MastMissions, MastMissionsClass, conf, load_rows
from astroquery_mastbulk.transfer import part_path

from helpers import assert_file_matches, expected_bytes, leftovers


@pytest.fixture(autouse=True)
def quick_retries():
    with conf.set_temp("backoff", 0.01), conf.set_temp("backoff_max", 0.05):
        yield


def rows(n, mission="jwst", prefix="f"):
    return [{"filename": f"{prefix}{i:03d}_cal.fits", "fileset": f"set{i % 3}", "mission": mission,
             "event_type": "New"} for i in range(n)]


def test_sample_notification_two_lines(server, sample_path, tmp_path):
    manifest = MastMissions.download_products(sample_path, download_dir=tmp_path, verbose=False)
    assert manifest.colnames[:4] == ["Local Path", "Status", "Message", "URL"]
    assert list(manifest["Status"]) == ["COMPLETE"] * 3
    for row, product in zip(manifest, load_rows(sample_path)):
        expected = tmp_path / "mastDownload" / "jwst" / product.fileset / product.filename
        assert row["Local Path"] == str(expected)
        assert_file_matches(server, row["Local Path"])
        assert row["URL"] == (f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name="
                              f"{product.filename}")
    assert list(manifest["event_type"]) == ["Reprocessed", "New", "Public"]
    assert leftovers(tmp_path) == []


def test_default_folder_is_cwd_and_relative_paths(server, sample_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = MastMissions.download_products(sample_path, verbose=False)
    assert manifest["Local Path"][0].startswith("mastDownload/jwst/")
    assert (tmp_path / manifest["Local Path"][0]).is_file()


@pytest.mark.parametrize("kind, params", [
    ("status", {"status": 500}), ("status", {"status": 503}), ("429", {"retry_after": 0}),
    ("cut", {"after": 1000}), ("short", {}), ("slow", {"delay": 0.2}),
])
def test_transient_faults_are_retried(server, tmp_path, kind, params):
    products = rows(3)
    target = products[1]["filename"]
    server.set_file(target, size=2880 * 20)
    server.add_fault(target, kind, count=2, **params)
    manifest = MastMissions.download_products(products, download_dir=tmp_path, verbose=False)
    assert list(manifest["Status"]) == ["COMPLETE"] * 3
    for path in manifest["Local Path"]:
        assert_file_matches(server, path)
    assert leftovers(tmp_path) == []


def test_cut_connection_resumes_with_range(server, tmp_path):
    name = "big_cal.fits"
    server.set_file(name, size=4 * 2**20)
    server.add_fault(name, "cut", after=2**20)
    manifest = MastMissions.download_products([{"filename": name, "fileset": "s", "mission": "hst"}],
                                              download_dir=tmp_path, verbose=False)
    assert manifest["Status"][0] == "COMPLETE"
    gets = server.requests(name=name, method="GET")
    assert gets[0].range is None and gets[1].range is not None and gets[1].range.startswith("bytes=")
    assert int(gets[1].range[6:-1]) > 0
    assert_file_matches(server, manifest["Local Path"][0])


def test_a_broken_body_is_reported_by_its_cause_once(server, tmp_path):
    from astroquery_mastbulk.transfer import Downloader, EngineSettings, Transfer
    name = "stall_cal.fits"
    server.set_file(name, size=2880 * 20)
    server.add_fault(name, "slow", after=2880, delay=2.0)
    url = f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name={name}"
    engine = Downloader(EngineSettings(read_timeout=0.3, retries=0))
    result, = engine.download([Transfer(url, tmp_path / name)])
    # The error that broke the body, named once: not also the engine's own wrapper around it.
    assert result.status == "ERROR"
    expected = r"connection broken after \d+ bytes: TimeoutError: timed out \(gave up after 1 attempt\)"
    assert re.fullmatch(expected, result.message), result.message


def test_retry_after_is_honoured(server, tmp_path):
    name = "busy_cal.fits"
    server.add_fault(name, "429", retry_after=1)
    start = time.monotonic()
    manifest = MastMissions.download_products([{"filename": name, "fileset": "s", "mission": "jwst"}],
                                              download_dir=tmp_path, verbose=False)
    gets = server.requests(name=name, method="GET")
    assert manifest["Status"][0] == "COMPLETE" and len(gets) == 2
    assert gets[1].started - gets[0].finished >= 0.9  # waited as told, not our 10 ms backoff
    assert time.monotonic() - start < 30


def test_one_failure_never_stops_the_others(server, tmp_path):
    products = rows(4)
    server.missing.add(products[0]["filename"])
    server.add_fault(products[2]["filename"], "status", count=50, status=502)
    manifest = MastMissions.download_products(products, download_dir=tmp_path, verbose=False)
    assert list(manifest["Status"]) == ["ERROR", "COMPLETE", "ERROR", "COMPLETE"]
    assert "HTTP 404" in manifest["Message"][0]
    assert "HTTP 502" in manifest["Message"][2] and "gave up after 6 attempts" in manifest["Message"][2]
    assert not os.path.exists(manifest["Local Path"][0]) and not os.path.exists(manifest["Local Path"][2])
    assert leftovers(tmp_path) == []


def test_existing_partial_is_resumed(server, tmp_path):
    name = "part_cal.fits"
    server.set_file(name, size=2880 * 50)
    final = tmp_path / "mastDownload" / "jwst" / "s" / name
    final.parent.mkdir(parents=True)
    part_path(final).write_bytes(expected_bytes(server, name)[:10000])
    manifest = MastMissions.download_products([{"filename": name, "fileset": "s", "mission": "jwst"}],
                                              download_dir=tmp_path, verbose=False)
    get, = server.requests(name=name, method="GET")
    assert get.range == "bytes=10000-" and get.status == 206
    assert manifest["Status"][0] == "COMPLETE" and manifest["bytes"][0] == 2880 * 50 - 10000
    assert_file_matches(server, final)
    assert not part_path(final).exists()


def test_range_ignored_restarts_cleanly(server, tmp_path):
    name = "norange_cal.fits"
    final = tmp_path / name
    part_path(final).write_bytes(b"garbage that must not survive")
    server.add_fault(name, "ignore_range")
    manifest = MastMissions.download_products([{"filename": name, "mission": "jwst"}], flat=True,
                                              download_dir=tmp_path, verbose=False)
    assert manifest["Status"][0] == "COMPLETE"
    assert server.requests(name=name, method="GET")[0].status == 200
    assert_file_matches(server, final)


def test_cache_skips_without_body_and_no_cache_refetches(server, tmp_path):
    products = rows(3)
    MastMissions.download_products(products, download_dir=tmp_path, verbose=False)
    server.reset()
    again = MastMissions.download_products(products, download_dir=tmp_path, verbose=False)
    assert list(again["Status"]) == ["SKIPPED"] * 3
    assert server.requests(method="GET") == []
    server.reset()
    fresh = MastMissions.download_products(products, download_dir=tmp_path, cache=False, verbose=False)
    assert list(fresh["Status"]) == ["COMPLETE"] * 3 and len(server.requests(method="GET")) == 3


def test_wrong_size_local_file_is_replaced(server, tmp_path):
    name = "trunc_cal.fits"
    final = tmp_path / name
    final.write_bytes(expected_bytes(server, name)[:100])
    manifest = MastMissions.download_products([{"filename": name, "mission": "jwst"}], flat=True,
                                              download_dir=tmp_path, verbose=False)
    assert manifest["Status"][0] == "COMPLETE"
    assert_file_matches(server, final)


def test_duplicates_fetched_once_but_reported_per_row(server, tmp_path):
    products = rows(2) + rows(2)
    manifest = MastMissions.download_products(products, download_dir=tmp_path, verbose=False)
    assert len(manifest) == 4 and set(manifest["Status"]) == {"COMPLETE"}
    assert len(server.requests(method="GET")) == 2


def test_unsafe_rows_write_nothing_outside(server, tmp_path):
    inside = tmp_path / "dl"
    products = [{"filename": "../../escape.fits", "fileset": "s", "mission": "jwst"},
                {"filename": "ok_cal.fits", "fileset": "..", "mission": "jwst"},
                {"filename": "/tmp/abs.fits", "fileset": "s", "mission": "jwst"},
                {"filename": "good_cal.fits", "fileset": "s", "mission": "jwst"}]
    manifest = MastMissions.download_products(products, download_dir=inside, verbose=False)
    assert list(manifest["Status"]) == ["ERROR", "ERROR", "ERROR", "COMPLETE"]
    assert all(m.startswith("refused: ") for m in manifest["Message"][:3])
    products_written = [p.name for p in tmp_path.rglob("*") if p.is_file() and ".mastbulk" not in p.parts]
    assert products_written == ["good_cal.fits"] and (inside / ".mastbulk").is_dir()  # the ledger's folder
    assert len(server.requests()) == 1


def test_filters_select_rows(server, sample_path, tmp_path):
    manifest = MastMissions.download_products(sample_path, download_dir=tmp_path, event_type="Public",
                                              verbose=False)
    assert list(manifest["event_type"]) == ["Public"]
    manifest = MastMissions.download_products(sample_path, download_dir=tmp_path, program=5893,
                                              extension="crf.fits", verbose=False)
    assert len(manifest) == 1 and manifest["filename"][0].startswith("jw05893")


def test_astroquery_column_filter_semantics(server, tmp_path):
    products = [dict(row, size=size) for row, size in zip(rows(4), (100, 2000, 5000, 9000))]
    manifest = MastMissions.download_products(products, download_dir=tmp_path, size=["<1000", "4000..6000"],
                                              verbose=False)
    assert list(manifest["filename"]) == [products[0]["filename"], products[2]["filename"]]
    manifest = MastMissions.download_products(products, download_dir=tmp_path, filename="!f001_cal.fits",
                                              verbose=False)
    assert len(manifest) == 3 and "f001_cal.fits" not in list(manifest["filename"])
    from astroquery_mastbulk import InputError
    with pytest.raises(InputError, match="no such column"):
        MastMissions.download_products(products, download_dir=tmp_path, colour="red", verbose=False)


def test_nothing_selected_warns_like_astroquery(server, sample_path, tmp_path):
    from astroquery.exceptions import NoResultsWarning
    with pytest.warns(NoResultsWarning):
        assert MastMissions.download_products(sample_path, download_dir=tmp_path, extension=".jpg",
                                              verbose=False) is None


def test_bad_notification_writes_nothing(server, tmp_path):
    from astroquery_mastbulk import InputError
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"filename": "a.fits", "fileset": "s"}, {"fileset": "s"}]))
    with pytest.raises(InputError, match="row 2: field 'filename'"):
        MastMissions.download_products(bad, download_dir=tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists() and server.requests() == []


def test_redirect_to_other_host_is_followed(server, second_server, tmp_path):
    server.add_fault("moved_cal.fits", "redirect", to=second_server.url)
    moved = [{"filename": "moved_cal.fits", "fileset": "s", "mission": "jwst"}]
    manifest = MastMissions.download_products(moved, download_dir=tmp_path, verbose=False)
    assert manifest["Status"][0] == "COMPLETE" and len(second_server.requests(method="GET")) == 1
    assert_file_matches(server, manifest["Local Path"][0])


def test_verbose_false_prints_nothing_and_verbose_shows_progress(server, tmp_path, capfd):
    MastMissions.download_products(rows(2), download_dir=tmp_path, verbose=False)
    assert capfd.readouterr() == ("", "")
    MastMissions.download_products(rows(2, prefix="g"), download_dir=tmp_path, verbose=True)
    err = capfd.readouterr().err
    assert "COMPLETE" in err and "[2/2]" in err  # stderr is not a terminal here: one line per file


def test_download_file_mission_and_astroquery_return(server, tmp_path):
    jwst = MastMissionsClass(mission="hst")
    name = "jw05893001001_02201_00001_mirimage_o001_crf.fits"
    status, msg, url = jwst.download_file(name, local_path=tmp_path, mission="jwst")
    assert (status, msg, url) == ("COMPLETE", None, None)
    assert_file_matches(server, tmp_path / name)
    assert server.requests()[-1].path == "/search/jwst/api/v0.1/retrieve_product"
    server.missing.add("gone.fits")
    status, msg, url = jwst.download_file("gone.fits", local_path=tmp_path / "gone.fits")
    assert status == "ERROR" and "404" in msg and url.endswith("/search/hst/api/v0.1/retrieve_product"
                                                                   "?product_name=gone.fits")


def test_enable_disable_existing_objects(server, sample_path, tmp_path):
    import astroquery.mast
    from astroquery.mast import MastMissionsClass as Original
    import astroquery_mastbulk
    before = Original.__dict__["download_products"]
    existing = astroquery.mast.MastMissions
    astroquery_mastbulk.enable()
    try:
        manifest = existing.download_products(sample_path, download_dir=tmp_path, verbose=False)
        assert isinstance(manifest, Table) and list(manifest["Status"]) == ["COMPLETE"] * 3
        created_after = Original(mission="jwst")
        assert created_after.download_products.__func__ is astroquery_mastbulk.missions.download_products
    finally:
        astroquery_mastbulk.disable()
    assert Original.__dict__["download_products"] is before


def test_subclass_keeps_astroquery_methods():
    from astroquery.mast import MastMissionsClass as Original
    assert issubclass(MastMissionsClass, Original)
    own = {name for name in vars(MastMissionsClass) if not name.startswith("_")}
    assert own <= {"download_products", "download_file", "login", "logout", "whoami"}
    for name in ("query_criteria", "get_product_list", "filter_products", "get_column_list"):
        assert name not in vars(MastMissionsClass) and callable(getattr(MastMissions, name))


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys
    from astroquery.mast import conf
    from astroquery_mastbulk import MastMissions
    conf.server = sys.argv[1]
    rows = [{"filename": f"slow{i}_cal.fits", "fileset": "s", "mission": "jwst"} for i in range(4)]
    try:
        MastMissions.download_products(rows, download_dir=sys.argv[2], verbose=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


def test_ctrl_c_stops_promptly_and_keeps_partials(server, tmp_path):
    for i in range(4):
        server.set_file(f"slow{i}_cal.fits", size=64 * 2**20)
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, server.url, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 130 and out.strip() == "interrupted", err
    assert err.count("Traceback") == 0
    assert leftovers(tmp_path)  # kept for the next run
    assert not any(p.name.startswith("slow") for p in tmp_path.rglob("slow*_cal.fits"))


@pytest.mark.parametrize("bypass", [False, True])
def test_http_proxy_from_the_environment(server, second_server, tmp_path, monkeypatch, bypass):
    # The second loopback server stands in for a forward proxy: it answers absolute-form requests.
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", second_server.url)
    if bypass:
        monkeypatch.setenv("no_proxy", "127.0.0.1")
    manifest = MastMissions.download_products(rows(2), download_dir=tmp_path, verbose=False)
    assert list(manifest["Status"]) == ["COMPLETE"] * 2
    for path in manifest["Local Path"]:
        assert_file_matches(server, path)
    through, direct = (second_server, server) if not bypass else (server, second_server)
    assert len(through.requests(method="GET")) == 2 and direct.requests() == []
    if not bypass:
        host = server.url.split("//", 1)[1]
        assert all(r.headers["host"] == host for r in second_server.requests())  # meant for the origin


def test_an_unreachable_proxy_is_reported_by_its_cause_once(server, tmp_path, monkeypatch):
    from astroquery_mastbulk.transfer import Downloader, EngineSettings, Transfer
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", dead_proxy)
    url = f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name=a_cal.fits"
    result, = Downloader(EngineSettings(retries=0)).download([Transfer(url, tmp_path / "a_cal.fits")])
    assert result.status == "ERROR" and server.requests() == []
    # urllib3's error, named once: not also as the ConnectionError it is translated into.
    assert result.message.startswith("ProxyError: ('Unable to connect to proxy'"), result.message


def test_transfers_overlap_on_at_most_max_workers_connections(server, tmp_path):
    # The engine runs twice as many workers as connections (to prepare and finish files while
    # others transfer); the connections themselves stay capped at max_workers, and all are used.
    server.latency = 0.1
    try:
        manifest = MastMissions.download_products(rows(24), download_dir=tmp_path, max_workers=3,
                                                  verbose=False)
    finally:
        server.latency = 0.0
    assert set(manifest["Status"]) == {"COMPLETE"}
    assert server.max_concurrency() == 3
    assert len({r.client for r in server.requests()}) == 3


def test_an_abandoned_response_gives_its_connection_back(server):
    # With one connection per host, a response closed before its body was read must return its
    # pool slot, or the next request would wait for it forever.
    from astroquery_mastbulk.httpclient import HttpClient
    from astroquery_mastbulk.transfer import EngineSettings
    server.set_file("big_cal.fits", size=4 << 20)
    client = HttpClient(EngineSettings(max_workers=1, read_timeout=5), lambda url: {}, threading.Event())
    url = f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name=big_cal.fits"
    outcome = []

    def twice():
        for _ in range(2):
            with client.request("GET", url) as response:
                outcome.append(response.status_code)  # closed with ~4 MiB unread
    worker = threading.Thread(target=twice, daemon=True)
    worker.start()
    worker.join(timeout=10)
    client.close()
    assert not worker.is_alive() and outcome == [200, 200]


def test_a_kept_alive_connection_the_server_dropped_is_replaced_at_once(server):
    # Servers close idle keep-alive connections; the next request on one must not fail for it.
    from astroquery_mastbulk.httpclient import HttpClient
    from astroquery_mastbulk.transfer import EngineSettings
    client = HttpClient(EngineSettings(max_workers=1), lambda url: {}, threading.Event())
    statuses = []
    try:
        for name in ("first_cal.fits", "second_cal.fits"):
            url = f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name={name}"
            with client.request("GET", url) as response:
                body = b"".join(response.iter_content(1 << 20))
                statuses.append((response.status_code, body == expected_bytes(server, name)))
            server.drop_idle_connections()
    finally:
        client.close()
    assert statuses == [(200, True), (200, True)]
    assert len({r.client for r in server.requests()}) == 2  # a new connection for the second


def test_retry_after_values():
    import email.utils

    from astroquery_mastbulk.httpclient import _retry_after
    assert _retry_after("120") == 120.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past: no wait
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(soon) <= 31
    assert _retry_after("soon") is None and _retry_after("") is None and _retry_after(None) is None


def test_no_ledger_timer_outlives_the_run(server, tmp_path):
    # Records are written in batches of 64, or a second after the first of a batch, by a timer.
    # A cancelled timer's thread ends only when it next runs: without close joining it, this
    # failed on Python 3.10 in 1 of 5 runs alone and 5 of 120 runs of the same download in a loop.
    manifest = MastMissions.download_products(rows(70), download_dir=tmp_path, verbose=False)
    assert set(manifest["Status"]) == {"COMPLETE"}
    assert [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()] == []
    from astroquery_mastbulk.ledger import Ledger
    ledger = Ledger(tmp_path)
    try:
        assert len(ledger.entries()) == 70
    finally:
        ledger.close()


def test_a_bug_in_one_transfer_is_raised_after_the_others_end(server, tmp_path):
    # Transfer failures are results; an exception escaping the engine's own code is a bug, and
    # must reach the caller (not vanish in a worker thread) once every other file has ended.
    from astroquery_mastbulk.transfer import Downloader, EngineSettings, Transfer
    transfers = [Transfer(f"{server.url}/search/jwst/api/v0.1/retrieve_product?product_name={name}",
                          tmp_path / "out" / name) for name in ("a_cal.fits", "b_cal.fits", "c_cal.fits")]

    def on_done(result):
        if result.transfer.path.name == "b_cal.fits":
            raise RuntimeError("bug in on_done")
    with pytest.raises(RuntimeError, match="bug in on_done"):
        Downloader(EngineSettings(max_workers=1), on_done=on_done).download(transfers)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_cal.fits", "b_cal.fits", "c_cal.fits"]
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("mastbulk")]
