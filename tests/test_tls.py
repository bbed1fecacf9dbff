"""HTTPS, as MAST is served: the server's certificate is verified, and the token goes to it only then.

The loopback server here serves TLS with a certificate for 127.0.0.1 issued by a throw-away CA
(trustme); clients trust that CA only when told to, through REQUESTS_CA_BUNDLE as with requests.
"""

import select
import socket
import socketserver
import ssl
import threading

import keyring
import pytest
import trustme
from astroquery.mast import conf as mast_conf

from astroquery_mastbulk import MastMissionsClass, conf
from astroquery_mastbulk.auth import KEYRING_SERVICE, KEYRING_USER
from astroquery_mastbulk.testing import MastServer

from conftest import TOKEN
from helpers import assert_file_matches


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(authority):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with MastServer(tokens={TOKEN: "Ada Lovelace"}, tls=context) as server:
        yield server


@pytest.fixture
def https(tls_server, monkeypatch):
    tls_server.reset()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with mast_conf.set_temp("server", tls_server.url), conf.set_temp("retries", 0):
        yield tls_server


class _Tunnel(socketserver.StreamRequestHandler):
    """A forward proxy's CONNECT, as corporate proxies do it for HTTPS: bytes piped both ways."""

    def handle(self):
        request = self.rfile.readline().decode("latin-1").split()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.server.seen.append(request)
        if len(request) < 2 or request[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = request[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 10)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


@pytest.fixture
def tunnel_proxy():
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Tunnel)
    proxy.daemon_threads, proxy.seen = True, []
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def rows(*names):
    return [{"filename": name, "fileset": "jw01234001001_02101_00001", "mission": "jwst", "event_type": "New"}
            for name in names]


@pytest.mark.parametrize("through_proxy", [False, True])
def test_https_with_the_ca_bundle_downloads_and_sends_the_token(https, authority, tmp_path, monkeypatch,
                                                                request, through_proxy):
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if through_proxy:  # as behind a corporate proxy: a CONNECT tunnel, the token only inside it
        proxy = request.getfixturevalue("tunnel_proxy")
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    keyring.set_password(KEYRING_SERVICE, KEYRING_USER, TOKEN)
    https.set_file("eap_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        rows("eap_cal.fits", "pub_cal.fits"), download_dir=tmp_path / "out", verbose=False)
    assert list(table["Status"]) == ["COMPLETE"] * 2, list(table["Message"])
    for path in table["Local Path"]:
        assert_file_matches(https, path)
    assert [r.headers.get("authorization") for r in https.requests(name="eap_cal.fits")] == [f"token {TOKEN}"]
    assert table["URL"][0].startswith("https://127.0.0.1:")
    if through_proxy:
        origin = https.url.split("//", 1)[1]
        assert proxy.seen and all(line[:2] == ["CONNECT", origin] for line in proxy.seen)


def test_an_unverifiable_server_gets_no_request_and_no_retry(https, tmp_path):
    keyring.set_password(KEYRING_SERVICE, KEYRING_USER, TOKEN)
    with conf.set_temp("retries", 3):  # a certificate that fails verification is not retried
        table = MastMissionsClass(mission="jwst").download_products(
            rows("pub_cal.fits"), download_dir=tmp_path / "out", verbose=False)
    assert list(table["Status"]) == ["ERROR"]
    assert "certificate verify failed" in table["Message"][0].lower()
    assert "gave up" not in table["Message"][0] and "REQUESTS_CA_BUNDLE" in table["Message"][0]
    assert https.requests() == []  # the handshake failed: not one request (nor token) was sent
    assert not (tmp_path / "out" / "mastDownload" / "jwst" / "jw01234001001_02101_00001"
                / "pub_cal.fits").exists()
