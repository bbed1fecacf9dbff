"""Nothing lost, nothing stale: faults, crashes, reprocessed files, the ledger, two runs at once,
write errors and checksums, against the local MAST server (and, for custom bytes, a tiny one)."""

import collections
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

from astroquery_mastbulk import MastMissions, conf
from astroquery_mastbulk.integrity import fits_problem
from astroquery_mastbulk.ledger import LEDGER_DIR, Ledger
from astroquery_mastbulk.testing import file_bytes
from astroquery_mastbulk.transfer import meta_path, part_path

from helpers import assert_file_matches

MiB = 2**20


@pytest.fixture(autouse=True)
def quick_retries():
    with conf.set_temp("backoff", 0.01), conf.set_temp("backoff_max", 0.05):
        yield


def row(name, event_type="New", fileset="s", archived=None, mission="jwst"):
    product = {"filename": name, "fileset": fileset, "mission": mission, "event_type": event_type}
    if archived is not None:
        product["archived_date"] = archived.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return product


def download(products, folder, **kwargs):
    return MastMissions.download_products(products, download_dir=folder, verbose=False, **kwargs)


def final_path(folder, name, fileset="s"):
    return folder / "mastDownload" / "jwst" / fileset / name


def litter(folder):
    """Hidden files (partials, validators, locks) left beside the products."""
    return sorted(str(p) for p in (folder / "mastDownload").rglob(".*"))


def since(server, mark):
    """Requests the server saw after the first ``mark`` ones."""
    return server.requests()[mark:]


# -- faults within one run --------------------------------------------------------------------------

def test_faults_end_byte_exact_with_checksums_or_honest_error(server, tmp_path):
    # Cuts fall on whole MiB: the engine reads a MiB at a time, and a read cut short is lost.
    faults = [[("status", 3, {"status": 500})], [("status", 2, {"status": 503})],
              [("429", 2, {"retry_after": 0})], [("cut", 3, {"after": MiB})], [("short", 2, {})],
              [("cut", 1, {"after": MiB}), ("ignore_range", 1, {})], [("status", 50, {"status": 502})], []]
    products = [row(f"fault{i}_cal.fits") for i in range(len(faults))]
    for product, queue in zip(products, faults):
        server.set_file(product["filename"], size=4 * MiB, checksum=True)
        for kind, count, params in queue:
            server.add_fault(product["filename"], kind, count=count, **params)
    manifest = download(products, tmp_path)
    assert list(manifest["Status"]) == ["COMPLETE"] * 6 + ["ERROR", "COMPLETE"]
    for product, local, expected_gets in zip(products[:6], manifest["Local Path"], [4, 3, 3, 4, 3, 2]):
        assert_file_matches(server, local)
        # One GET per failure plus the one that succeeds: each resumed partial was hashed right.
        assert len(server.requests(name=product["filename"], method="GET")) == expected_gets
    resumed = server.requests(name="fault3_cal.fits", method="GET")
    assert [g.range is not None for g in resumed] == [False, True, True, True]
    restarted = server.requests(name="fault5_cal.fits", method="GET")[1]
    assert restarted.range == f"bytes={MiB}-" and restarted.status == 200  # Range ignored: begun again
    assert "HTTP 502" in manifest["Message"][6] and not os.path.exists(manifest["Local Path"][6])
    assert litter(tmp_path) == []


def test_file_changed_between_partial_and_resume_restarts(server, tmp_path):
    name = "changing_cal.fits"
    server.set_file(name, size=2 * MiB)
    server.add_fault(name, "cut", after=MiB)
    with conf.set_temp("retries", 0):
        first = download([row(name)], tmp_path)
    final = final_path(tmp_path, name)
    assert first["Status"][0] == "ERROR" and part_path(final).stat().st_size == MiB
    assert meta_path(final).is_file()
    old_etag = server.etag(name)
    server.bump_version(name)  # reprocessed in the archive: same size, other bytes
    mark = len(server.requests())
    second = download([row(name)], tmp_path)
    assert second["Status"][0] == "COMPLETE"
    resume, restart = since(server, mark)
    assert resume.range == f"bytes={MiB}-" and resume.headers["if-range"] == old_etag and resume.status == 206
    assert restart.range is None and restart.status == 200
    assert_file_matches(server, final)
    assert litter(tmp_path) == []


def test_checksum_catches_a_partial_of_another_version(server, tmp_path):
    name = "mixed_cal.fits"
    size = 2880 * 40
    server.set_file(name, size=size, checksum=True)
    final = tmp_path / name
    part_path(final).write_bytes(file_bytes(name, size, 0, 30000, version=7))  # no validators beside it
    manifest = download([{"filename": name, "mission": "jwst"}], tmp_path, flat=True)
    assert manifest["Status"][0] == "COMPLETE"
    gets = server.requests(name=name, method="GET")
    assert [(g.range, g.status) for g in gets] == [("bytes=30000-", 206), (None, 200)]
    assert_file_matches(server, final)


# -- crash recovery ---------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, resource, signal, sys, time
    spec = json.loads(sys.argv[1])
    from astroquery.mast import conf as mast_conf
    from astroquery_mastbulk import MastMissions, conf
    mast_conf.server = spec["server"]
    for name, value in spec.get("conf", {}).items():
        setattr(conf, name, value)
    if spec.get("fsize"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"]))
    print("ready", flush=True)
    while spec.get("go") and not os.path.exists(spec["go"]):
        time.sleep(0.005)
    table = MastMissions.download_products(spec["rows"], download_dir=spec["dir"], verbose=False)
    print(json.dumps([[r["Local Path"], r["Status"], r["Message"]] for r in table]), flush=True)
""")


def spawn(server, folder, products, **spec):
    spec.update(server=server.url, dir=str(folder), rows=products)
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", child.communicate()[1]
    return child


def table_of(child):
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def recorded(folder):
    ledger = Ledger(folder)
    try:
        return set(ledger.entries())
    finally:
        ledger.close()


def test_sigkill_mid_download_then_rerun_resumes_and_refetches_nothing(server, tmp_path):
    big = "killed_cal.fits"
    server.set_file(big, size=6 * MiB, checksum=True)
    server.add_fault(big, "cut", after=2 * MiB)
    small = [row(f"done{i}_cal.fits") for i in range(3)]
    products = small + [row(big)]
    # The child gets the small files and 2 MiB of the big one, then waits a minute to retry: killed there.
    child = spawn(server, tmp_path, products, conf={"backoff": 60.0, "backoff_max": 60.0})
    partial = part_path(final_path(tmp_path, big))
    try:
        wait_for(lambda: len(recorded(tmp_path)) == 3 and partial.is_file()
                 and partial.stat().st_size == 2 * MiB)
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert not final_path(tmp_path, big).exists()
    mark = len(server.requests())
    manifest = download(products, tmp_path)
    assert list(manifest["Status"]) == ["SKIPPED"] * 3 + ["COMPLETE"]
    resumed, = since(server, mark)  # nothing at all about the complete files
    assert (resumed.name, resumed.method, resumed.status) == (big, "GET", 206)
    assert resumed.range == f"bytes={2 * MiB}-"
    assert resumed.headers["if-range"] == server.etag(big) and manifest["bytes"][3] == 4 * MiB
    for local in manifest["Local Path"]:
        assert_file_matches(server, local)
    assert litter(tmp_path) == []


# -- reprocessed files and the ledger ---------------------------------------------------------------

def test_reprocessed_same_size_is_replaced_new_is_not(server, tmp_path):
    name = "reprocessed_cal.fits"
    server.set_file(name, size=2880 * 30)
    final = final_path(tmp_path, name)
    assert download([row(name)], tmp_path)["Status"][0] == "COMPLETE"
    server.bump_version(name)  # the archive reprocesses it: same size, other bytes
    mark = len(server.requests())
    assert download([row(name, "New")], tmp_path)["Status"][0] == "SKIPPED"
    assert download([row(name, "Public")], tmp_path)["Status"][0] == "SKIPPED"
    assert since(server, mark) == []
    archived = datetime.now(timezone.utc)
    replaced = download([row(name, "Reprocessed", archived=archived)], tmp_path)
    assert replaced["Status"][0] == "COMPLETE" and replaced["Local Path"][0] == str(final)
    assert [(r.method, r.range) for r in since(server, mark)] == [("GET", None)]  # known stale: no HEAD
    assert_file_matches(server, final)
    mark = len(server.requests())
    again = download([row(name, "Reprocessed", archived=archived)], tmp_path)
    assert again["Status"][0] == "SKIPPED" and since(server, mark) == []  # fetched after archived_date
    # Without the ledger, the file's own time tells: a copy older than archived_date is stale.
    shutil.rmtree(tmp_path / LEDGER_DIR)
    server.bump_version(name)
    old = (archived - timedelta(hours=1)).timestamp()
    os.utime(final, (old, old))
    assert download([row(name, "Reprocessed", archived=archived)], tmp_path)["Status"][0] == "COMPLETE"
    assert_file_matches(server, final)
    assert litter(tmp_path) == []


def test_ledger_rerun_is_free_and_touched_files_come_back(server, tmp_path):
    products = [row(f"kept{i}_cal.fits", "Public" if i % 2 else "New") for i in range(6)]
    first = download(products, tmp_path)
    assert set(first["Status"]) == {"COMPLETE"}
    mark = len(server.requests())
    second = download(products, tmp_path)
    assert list(second["Status"]) == ["SKIPPED"] * 6 and since(server, mark) == []
    paths = [final_path(tmp_path, p["filename"]) for p in products]
    paths[0].unlink()
    with open(paths[1], "r+b") as truncated:
        truncated.truncate(1000)
    paths[2].write_bytes(bytes(paths[2].stat().st_size))  # same size, other bytes, a newer mtime
    stamp = paths[2].stat().st_mtime_ns + 10**9
    os.utime(paths[2], ns=(stamp, stamp))
    third = download(products, tmp_path)
    assert list(third["Status"]) == ["COMPLETE"] * 3 + ["SKIPPED"] * 3
    assert sorted((r.name, r.method) for r in since(server, mark)) == [
        (p["filename"], "GET") for p in products[:3]]  # exactly those, and no HEAD for the modified one
    for path in paths:
        assert_file_matches(server, path)
    assert recorded(tmp_path) == {f"mastDownload/jwst/s/{p['filename']}" for p in products}


def test_corrupt_ledger_costs_requests_not_correctness(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no download_dir: files and ledger go to the current folder
    products = [row(f"cur{i}_cal.fits") for i in range(3)]
    assert set(MastMissions.download_products(products, verbose=False)["Status"]) == {"COMPLETE"}
    ledger_file = tmp_path / LEDGER_DIR / "ledger.sqlite"
    assert ledger_file.is_file()
    ledger_file.write_bytes(b"not a database at all " * 100)
    mark = len(server.requests())
    again = MastMissions.download_products(products, verbose=False)
    assert list(again["Status"]) == ["SKIPPED"] * 3
    assert sorted(r.method for r in since(server, mark)) == ["HEAD"] * 3  # asked the server instead
    mark = len(server.requests())
    assert list(MastMissions.download_products(products, verbose=False)["Status"]) == ["SKIPPED"] * 3
    assert since(server, mark) == []  # the ledger was recreated
    for product in products:
        assert_file_matches(server, final_path(tmp_path, product["filename"]))


def test_recording_a_file_never_waits_for_a_ledger_write(tmp_path):
    # Another run holds the ledger's write lock, so a batch being written waits for it (SQLite's
    # busy timeout); the workers recording other files meanwhile must not wait with it.
    import sqlite3

    from astroquery_mastbulk.ledger import LEDGER_NAME
    from astroquery_mastbulk.transfer import COMPLETE, Transfer, TransferResult

    def complete(name):
        (tmp_path / name).write_bytes(b"x")
        return TransferResult(Transfer(f"https://mast.stsci.edu/{name}", tmp_path / name), COMPLETE, size=1)
    ledger = Ledger(tmp_path)
    ledger.record(complete("first.fits"))
    ledger.close()
    blocker = sqlite3.connect(tmp_path / LEDGER_DIR / LEDGER_NAME, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ledger = Ledger(tmp_path)
    ledger.record(complete("second.fits"))
    writer = threading.Thread(target=ledger.flush)
    writer.start()
    try:
        time.sleep(0.3)  # the writer is now waiting for the database
        assert writer.is_alive()
        started = time.monotonic()
        ledger.record(complete("third.fits"))
        assert time.monotonic() - started < 0.2
    finally:
        blocker.rollback()
        blocker.close()
        writer.join(timeout=30)
        ledger.close()
    assert recorded(tmp_path) == {"first.fits", "second.fits", "third.fits"}


# -- two runs at once -------------------------------------------------------------------------------

def test_two_runs_at_once_into_one_folder(server, tmp_path):
    products = [row(f"both{i}_cal.fits") for i in range(8)]
    for product in products:
        server.set_file(product["filename"], size=MiB, checksum=True)
    go = tmp_path / "go"
    folder = tmp_path / "data"
    server.latency = 0.1
    try:
        children = [spawn(server, folder, products, go=str(go), conf={"max_workers": 3}) for _ in range(2)]
        go.touch()
        tables = {str(child.pid): table_of(child) for child in children}
    finally:
        server.latency = 0.0
    spans = {pid: [r for r in server.requests() if r.pid == pid] for pid in tables}
    assert max(rs[0].started for rs in spans.values()) < min(rs[-1].finished for rs in spans.values())
    for i, product in enumerate(products):
        get, = server.requests(name=product["filename"], method="GET")  # fetched by one run only
        assert get.status == 200
        assert {pid: table[i][1] for pid, table in tables.items()} == {
            pid: "COMPLETE" if pid == get.pid else "SKIPPED" for pid in tables}
        assert_file_matches(server, final_path(folder, product["filename"]))
    assert litter(folder) == []


# -- write errors -----------------------------------------------------------------------------------

def test_file_too_large_is_an_error_for_that_row_only(server, tmp_path):
    big = "toolarge_cal.fits"
    server.set_file(big, size=3 * MiB)
    products = [row("fits0_cal.fits"), row(big), row("fits1_cal.fits")]
    child = spawn(server, tmp_path, products, fsize=MiB)
    table = table_of(child)
    assert [status for _path, status, _message in table] == ["COMPLETE", "ERROR", "COMPLETE"]
    assert "File too large" in table[1][2]
    assert not final_path(tmp_path, big).exists()
    for local, _status, _message in (table[0], table[2]):
        assert_file_matches(server, local)
    assert litter(tmp_path) == []  # the partial was dropped to free the space


def test_folder_blocked_by_a_file_is_an_error_for_its_rows_only(server, tmp_path):
    blocked = tmp_path / "mastDownload" / "hst"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where a folder should be")
    products = [row("open0_cal.fits"), row("shut_cal.fits", mission="hst"), row("open1_cal.fits")]
    manifest = download(products, tmp_path)
    assert list(manifest["Status"]) == ["COMPLETE", "ERROR", "COMPLETE"]
    assert "Not a directory" in manifest["Message"][1]
    assert blocked.read_text() == "a file where a folder should be"
    assert_file_matches(server, manifest["Local Path"][0])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders (RLIMIT_FSIZE and ENOTDIR tests still run)")
def test_read_only_folder_is_an_error_for_its_rows_only(server, tmp_path):
    locked = final_path(tmp_path, "x", fileset="locked").parent
    locked.mkdir(parents=True)
    locked.chmod(0o555)
    try:
        manifest = download([row("ro_cal.fits", fileset="locked"), row("rw_cal.fits")], tmp_path)
    finally:
        locked.chmod(0o755)
    assert list(manifest["Status"]) == ["ERROR", "COMPLETE"] and "Permission denied" in manifest["Message"][0]
    assert list(locked.iterdir()) == []


# -- integrity --------------------------------------------------------------------------------------

class _FixedFiles(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[product_name] = (bytes, checksum header or None)``: custom bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _answer(self, body):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        name = query.get("product_name", [""])[0]
        data, checksum = self.server.files[name]
        self.server.hits[name, self.command] += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        if checksum:
            self.send_header("X-Checksum-Sha256", checksum)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fixed_server():
    from astroquery.mast import conf as mast_conf
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FixedFiles)
    httpd.files, httpd.hits = {}, collections.Counter()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with mast_conf.set_temp("server", f"http://127.0.0.1:{httpd.server_address[1]}"):
            yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_checksum_mismatch_is_retried_then_error(fixed_server, tmp_path):
    data = os.urandom(50000)
    fixed_server.files["bad_cal.fits"] = (data, hashlib.sha256(b"other bytes").hexdigest())
    fixed_server.files["good_cal.fits"] = (data, hashlib.sha256(data).hexdigest())
    manifest = download([row("bad_cal.fits"), row("good_cal.fits")], tmp_path)
    assert list(manifest["Status"]) == ["ERROR", "COMPLETE"]
    assert "checksum mismatch" in manifest["Message"][0]
    assert "gave up after 3 attempts" in manifest["Message"][0]
    assert fixed_server.hits["bad_cal.fits", "GET"] == 3
    assert not final_path(tmp_path, "bad_cal.fits").exists() and litter(tmp_path) == []
    assert final_path(tmp_path, "good_cal.fits").read_bytes() == data


def _fits_bytes(tmp_path, corrupt=False, checksum=True):
    import numpy as np
    from astropy.io import fits
    path = tmp_path / f"made_{corrupt}_{checksum}.fits"
    primary = fits.PrimaryHDU(np.arange(500, dtype="int32"))
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.linspace(0, 1, 20))])
    fits.HDUList([primary, table]).writeto(path, checksum=checksum, overwrite=True)
    data = bytearray(path.read_bytes())
    if corrupt:
        data[2880 + 100] ^= 0x01  # one bit of the primary data unit
    path.write_bytes(data)
    return path


def test_fits_checksum_verification(tmp_path):
    assert fits_problem(_fits_bytes(tmp_path)) is None
    problem = fits_problem(_fits_bytes(tmp_path, corrupt=True))
    assert problem == ("FITS CHECKSUM of HDU 0 (PRIMARY) does not match; "
                       "DATASUM of HDU 0 (PRIMARY) does not match")
    unsummed = _fits_bytes(tmp_path, corrupt=True, checksum=False)
    assert fits_problem(unsummed) is None  # no keywords: nothing to check against
    truncated = tmp_path / "short.fits"
    truncated.write_bytes(_fits_bytes(tmp_path).read_bytes()[:4000])
    assert fits_problem(truncated).startswith("FITS file does not verify")
    other = tmp_path / "notes.txt"
    other.write_text("not FITS")
    assert fits_problem(other) is None


def test_verify_true_keeps_corrupt_fits_out(fixed_server, tmp_path):
    good = _fits_bytes(tmp_path).read_bytes()
    bad = _fits_bytes(tmp_path, corrupt=True).read_bytes()
    fixed_server.files.update({"good_cal.fits": (good, None), "bad_cal.fits": (bad, None)})
    products = [row("good_cal.fits"), row("bad_cal.fits")]
    checked = download(products, tmp_path / "checked", verify=True)
    assert list(checked["Status"]) == ["COMPLETE", "ERROR"] and "DATASUM of HDU 0" in checked["Message"][1]
    assert not final_path(tmp_path / "checked", "bad_cal.fits").exists()
    assert final_path(tmp_path / "checked", "good_cal.fits").read_bytes() == good
    unchecked = download(products, tmp_path / "unchecked")
    assert list(unchecked["Status"]) == ["COMPLETE", "COMPLETE"]
