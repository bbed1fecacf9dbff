"""Tests of the loopback MAST test server itself, with plain http.client."""

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from astroquery_mastbulk.testing import (MastServer, file_bytes, file_sha256, file_size,
                                         iter_file_bytes)

NAME = "jw01234-o001_t001_nircam_clear-f090w_i2d.fits"


@pytest.fixture
def srv():
    with MastServer(tokens={"good": "Jane Doe"}) as server:
        yield server


def portal_path(name, mission="jwst"):
    query = urllib.parse.urlencode({"product_name": name})
    return f"/search/{mission}/api/v0.1/retrieve_product?{query}"


def download_path(name, mission="JWST"):
    return "/api/v0.1/Download/file?" + urllib.parse.urlencode(
        {"uri": f"mast:{mission}/product/{name}"})


def fetch(server, path, method="GET", headers=None):
    """Return ``(status, headers, body)`` of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# -- content ------------------------------------------------------------------

def test_content_is_deterministic_and_position_dependent():
    size = 300_000
    data = file_bytes(NAME, size)
    assert len(data) == size and data == file_bytes(NAME, size)
    assert file_bytes(NAME, size, 70_000, 200_000) == data[70_000:200_000]
    assert b"".join(iter_file_bytes(NAME, size, 5, None, chunk=1)) == data[5:]
    assert data[:65536] != data[65536:131072]
    assert file_bytes(NAME, size, version=1) != data
    assert file_bytes("other.fits", size) != data
    assert file_sha256(NAME, size) != file_sha256(NAME, size, 1)


def test_default_size_is_fits_blocks():
    sizes = {file_size(f"f{i}.fits") for i in range(200)}
    assert all(s % 2880 == 0 and 2880 <= s <= 16 * 2880 for s in sizes)
    assert len(sizes) > 8 and file_size(NAME) == file_size(NAME, 3)


# -- basic serving ------------------------------------------------------------

@pytest.mark.parametrize("path", [portal_path(NAME), portal_path(NAME, "hst"),
                                  download_path(NAME)])
def test_full_get(srv, path):
    status, headers, body = fetch(srv, path)
    assert status == 200 and body == file_bytes(NAME, file_size(NAME))
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"].startswith('"') and headers["ETag"] == srv.etag(NAME)
    assert headers["Last-Modified"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert headers["Content-Disposition"] == f"attachment; filename={NAME}"
    assert "X-Checksum-Sha256" not in headers


def test_quoted_names_sizes_and_versions(srv):
    name = "odd name+%&.fits"
    srv.set_file(name, size=12_345, last_modified=86400.0, checksum=True)
    status, headers, body = fetch(srv, portal_path(name))
    assert status == 200 and body == file_bytes(name, 12_345)
    assert headers["Last-Modified"] == "Fri, 02 Jan 1970 00:00:00 GMT"
    assert headers["X-Checksum-Sha256"] == file_sha256(name, 12_345)
    etag = headers["ETag"]
    srv.bump_version(name)
    status, headers, body = fetch(srv, download_path(name))
    assert body == file_bytes(name, 12_345, version=1) and headers["ETag"] != etag


def test_default_size_and_checksums_server_wide():
    with MastServer(default_size=5000, send_checksums=True) as server:
        status, headers, body = fetch(server, portal_path("a.fits"))
    assert len(body) == 5000 and headers["X-Checksum-Sha256"] == file_sha256("a.fits", 5000)


def test_range_requests(srv):
    srv.set_file(NAME, size=100_000, checksum=True)
    data = file_bytes(NAME, 100_000)
    status, headers, body = fetch(srv, portal_path(NAME), headers={"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    assert headers["Content-Range"] == "bytes 1000-99999/100000"
    assert headers["X-Checksum-Sha256"] == file_sha256(NAME, 100_000)
    status, headers, body = fetch(srv, portal_path(NAME), headers={"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Length"]) == (206, data[10:20], "10")
    status, headers, body = fetch(srv, portal_path(NAME), headers={"Range": "bytes=100000-"})
    assert status == 416 and headers["Content-Range"] == "bytes */100000"
    srv.ignore_range = True
    status, _, body = fetch(srv, portal_path(NAME), headers={"Range": "bytes=10-19"})
    assert status == 200 and body == data


def test_head(srv):
    srv.set_file(NAME, size=7777)
    status, headers, body = fetch(srv, download_path(NAME), method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", "7777")
    assert srv.requests(NAME)[0].bytes_sent == 0


def test_errors(srv):
    srv.missing.add(NAME)
    assert fetch(srv, portal_path(NAME))[0] == 404
    assert fetch(srv, "/nowhere")[0] == 404
    assert fetch(srv, "/api/v0.1/Download/file?uri=http:/x/y.fits")[0] == 400


# -- authentication -----------------------------------------------------------

def test_eap_and_whoami(srv):
    srv.set_file(NAME, eap=True)
    status, _, body = fetch(srv, portal_path(NAME))
    assert status == 401 and "error" in json.loads(body)
    assert fetch(srv, portal_path(NAME), headers={"Authorization": "token bad"})[0] == 401
    assert fetch(srv, portal_path(NAME), headers={"Authorization": "token good"})[0] == 200
    assert fetch(srv, portal_path(NAME), headers={"Cookie": "mast_token=good"})[0] == 200
    srv.forbidden.add(NAME)
    assert fetch(srv, portal_path(NAME), headers={"Authorization": "token good"})[0] == 403
    who = json.loads(fetch(srv, "/whoami", headers={"Authorization": "token good"})[2])
    assert who == {"anon": False, "attrib": {"display_name": "Jane Doe"}, "ezid": "Jane Doe"}
    assert json.loads(fetch(srv, "/whoami")[2]) == {"anon": True, "attrib": {}}


# -- faults -------------------------------------------------------------------

def test_status_and_429_faults(srv):
    srv.add_fault(NAME, "status", count=2, status=503)
    srv.add_fault(NAME, "429", retry_after=7)
    assert fetch(srv, portal_path(NAME), method="HEAD")[0] == 503
    assert fetch(srv, portal_path(NAME))[0] == 503
    status, headers, _ = fetch(srv, portal_path(NAME))
    assert (status, headers["Retry-After"]) == (429, "7")
    assert fetch(srv, portal_path(NAME))[0] == 200
    assert srv.pending_faults(NAME) == []
    with pytest.raises(ValueError):
        srv.add_fault(NAME, "bogus")


@pytest.mark.parametrize("kind", ["cut", "short"])
def test_truncating_faults(srv, kind):
    srv.set_file(NAME, size=200_000)
    srv.add_fault(NAME, kind, after=1234)
    assert fetch(srv, portal_path(NAME), method="HEAD")[0] == 200  # not consumed
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", portal_path(NAME))
        resp = conn.getresponse()
        assert resp.headers["Content-Length"] == "200000"
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == file_bytes(NAME, 200_000)[:1234]
    finally:
        conn.close()
    assert srv.requests(NAME, "GET")[0].bytes_sent == 1234
    assert fetch(srv, portal_path(NAME))[2] == file_bytes(NAME, 200_000)


def test_slow_fault_and_latency(srv):
    srv.add_fault(NAME, "slow", delay=0.3)
    t0 = time.monotonic()
    fetch(srv, portal_path(NAME))
    assert time.monotonic() - t0 >= 0.3
    srv.latency = 0.2
    t0 = time.monotonic()
    fetch(srv, portal_path(NAME), method="HEAD")
    assert 0.2 <= time.monotonic() - t0 < 0.35


def test_ignore_range_and_change_faults(srv):
    srv.set_file(NAME, size=50_000)
    srv.add_fault(NAME, "ignore_range")
    srv.add_fault(NAME, "change", size=60_000)
    status, _, body = fetch(srv, portal_path(NAME), headers={"Range": "bytes=100-"})
    assert status == 200 and body == file_bytes(NAME, 50_000)
    assert fetch(srv, portal_path(NAME))[2] == file_bytes(NAME, 50_000)
    assert fetch(srv, portal_path(NAME))[2] == file_bytes(NAME, 60_000, version=1)


def test_redirects(srv):
    with MastServer() as other:
        srv.set_file(NAME, eap=True)
        srv.add_fault(NAME, "redirect", to=other.url, status=307)
        path = portal_path(NAME)
        status, headers, _ = fetch(srv, path, headers={"Authorization": "token good"})
        assert (status, headers["Location"]) == (307, other.url + path)
        srv.add_fault(NAME, "redirect", to="http://127.0.0.1:1/x", full=True)
        headers = fetch(srv, path, headers={"Authorization": "token good"})[1]
        assert headers["Location"] == "http://127.0.0.1:1/x"
        srv.redirect_all_to = other.url + "/"
        status, headers, _ = fetch(srv, download_path(NAME), headers={"Cookie": "mast_token=good"})
        assert (status, headers["Location"]) == (302, other.url + download_path(NAME))
        assert fetch(other, path)[0] == 200
        assert all("authorization" not in r.headers for r in other.log)


# -- log, connections, concurrency, reset ---------------------------------------

def test_log_and_keep_alive(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for rng in (None, "bytes=0-9"):
            headers = {"X-Mastbulk-Pid": "42", **({"Range": rng} if rng else {})}
            conn.request("GET", portal_path(NAME), headers=headers)
            conn.getresponse().read()
    finally:
        conn.close()
    first, second = srv.requests(NAME, "GET")
    assert len(srv.connections()) == 1 and first.client == second.client
    assert first.connection == second.connection > 0
    assert srv.max_concurrency() == 1
    assert first.path == "/search/jwst/api/v0.1/retrieve_product"
    assert first.query == {"product_name": NAME} and first.name == NAME
    assert (first.status, first.bytes_sent, first.range) == (200, file_size(NAME), None)
    assert (second.status, second.bytes_sent, second.range) == (206, 10, "bytes=0-9")
    assert first.pid == "42" and first.headers["x-mastbulk-pid"] == "42"
    assert first.started <= first.finished <= second.started
    srv.reset()
    assert srv.log == [] and srv.tokens == {"good": "Jane Doe"}


def test_concurrency_and_client_disconnect(srv):
    srv.latency = 0.2
    results = []

    def worker():
        results.append(fetch(srv, portal_path(NAME))[0])

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 64 and srv.max_concurrency() == 64
    assert len(srv.connections()) == 64
    srv.latency = 0.0
    srv.set_file("big.fits", size=50 << 20)
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(f"GET {portal_path('big.fits')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(65536)
    deadline = time.monotonic() + 5
    while not srv.requests("big.fits") and time.monotonic() < deadline:
        time.sleep(0.01)
    # A write interrupted by the reset counts as unsent, so only an upper bound holds.
    record = srv.requests("big.fits")[0]
    assert record.status == 200 and record.bytes_sent < 50 << 20


def test_large_file_streams_fast(srv):
    size = 64 << 20
    srv.set_file("big.fits", size=size)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        t0 = time.monotonic()
        conn.request("GET", portal_path("big.fits"))
        resp = conn.getresponse()
        received, tail = 0, b""
        while chunk := resp.read(1 << 20):
            received, tail = received + len(chunk), chunk
        elapsed = time.monotonic() - t0
    finally:
        conn.close()
    assert received == size and tail == file_bytes("big.fits", size, size - len(tail))
    assert size / elapsed > 50e6, f"{size / elapsed / 1e6:.0f} MB/s"


def test_each_connection_has_its_own_serial(srv):
    # Not the client's port: the operating system hands a closed connection's port out again.
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            for _ in range(2):
                conn.request("GET", portal_path(NAME))
                conn.getresponse().read()
        finally:
            conn.close()
    serials = [r.connection for r in srv.requests(NAME, "GET")]
    assert serials[0::2] == serials[1::2] and len(set(serials)) == 3 and srv.connections() == set(serials)


def test_command_line(tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "astroquery_mastbulk.testing", "--default-size", "100",
         "--token", "t=Tom", "--log-summary", str(summary)],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("MAST test server on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for rng in ({}, {"Range": "bytes=5-"}):
                conn.request("GET", portal_path("a.fits"), headers=rng)
                assert len(conn.getresponse().read()) == (100 if not rng else 95)
        finally:
            conn.close()
        proc.terminate()
        assert proc.wait(10) == 0 and proc.stdout.read() == ""
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = json.loads(summary.read_text())
    assert data["requests"] == 2 and data["connections"] == 1
    assert data["range_requests"] == 1 and data["gets_by_name"] == {"a.fits": 2}
    assert data["by_status"] == {"200": 1, "206": 1} and data["by_method"] == {"GET": 2}
    assert data["first_request_at"] < data["last_response_at"]
    assert 0 < data["median_turnaround"] < data["last_response_at"] - data["first_request_at"]
