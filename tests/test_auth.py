"""Tokens: where they come from, which hosts see them, what an auth failure says, and that none leaks.

Every keyring here is real: the autouse ``private_keyring`` fixture gives a file-backed keyrings.alt
backend in a temporary home, chosen through keyring's own configuration (PYTHON_KEYRING_BACKEND).
"""

import io
import logging
import sys
import traceback
from pathlib import Path

import keyring
import keyring.core
import pytest

from astroquery_mastbulk import MastMissionsClass, conf, load_rows
from astroquery_mastbulk import auth
from astroquery_mastbulk.auth import (KEYRING_SERVICE, KEYRING_USER, TOKEN_URL, LoginError, TokenAuth,
                                      TrustedHosts, find_token, resolve_token, token_auth)
from astroquery_mastbulk.jobs import plan_jobs
from astroquery_mastbulk.logger import MASK, log
from astroquery_mastbulk.manifest import results_table, write_manifest
from astroquery_mastbulk.runner import run_jobs
from astroquery_mastbulk.transfer import Downloader

from conftest import OTHER_TOKEN, TOKEN
from helpers import assert_file_matches

ENV_TOKEN = "tok-env-5d1e9b7a3c2f4e6a8b0c1d2e3f4a5b6c"
KEY_TOKEN = "tok-key-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
FUTURE, PAST = "2099-01-01T00:00:00", "2020-01-01T00:00:00"


def row(name, release=None, mission="jwst"):
    record = {"filename": name, "fileset": "jw01234001001_02101_00001", "mission": mission,
              "event_type": "New"}
    if release:
        record["public_release_date"] = release
    return record


def authorization(server, name):
    """The Authorization header of each request the server saw for ``name``, in order."""
    return [r.headers.get("authorization") for r in server.requests(name=name)]


def store(token):
    keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)


def use_fail_keyring(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core.init_backend()


# -- where the token comes from ----------------------------------------------------------------

def test_keyring_is_a_real_file_backend(private_keyring):
    store(KEY_TOKEN)
    assert type(keyring.get_keyring()).__name__ == "PlaintextKeyring"
    backend_file = keyring.get_keyring().file_path
    assert backend_file.startswith(str(private_keyring)) and KEYRING_USER in Path(backend_file).read_text()
    assert find_token() == (KEY_TOKEN, "keyring")


@pytest.mark.parametrize("given, expected, source", [
    ({"keyring"}, KEY_TOKEN, "keyring"),
    ({"keyring", "env"}, ENV_TOKEN, "MAST_API_TOKEN"),
    ({"keyring", "env", "explicit"}, TOKEN, "argument"),
    ({"explicit"}, TOKEN, "argument"),
])
def test_token_order_explicit_env_keyring(server, tmp_path, monkeypatch, given, expected, source):
    server.tokens.update({ENV_TOKEN: "Env User", KEY_TOKEN: "Key User"})
    if "keyring" in given:
        store(KEY_TOKEN)
    if "env" in given:
        monkeypatch.setenv("MAST_API_TOKEN", ENV_TOKEN)
    explicit = TOKEN if "explicit" in given else None
    assert find_token(explicit) == (expected, source)
    server.set_file("eap_cal.fits", eap=True)
    client = MastMissionsClass(mission="jwst", mast_token=explicit)
    table = client.download_products([row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE"]
    assert authorization(server, "eap_cal.fits") == [f"token {expected}"]
    assert server.tokens[expected] in client.whoami() and source in client.whoami()


def test_astroquery_session_cookie_counts_as_explicit(server, monkeypatch):
    server.tokens[ENV_TOKEN] = "Env User"
    monkeypatch.setenv("MAST_API_TOKEN", ENV_TOKEN)
    client = MastMissionsClass()
    client._session.cookies["mast_token"] = TOKEN  # what astroquery's own login leaves behind
    assert client.whoami().startswith("Ada Lovelace (MAST token from argument")


def test_token_is_read_per_call_not_at_import(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    client = MastMissionsClass(mission="jwst")
    first = client.download_products([row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(first["Status"]) == ["ERROR"]
    store(TOKEN)  # stored after the client exists: the next call finds it
    second = client.download_products([row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(second["Status"]) == ["COMPLETE"]


def test_fail_backend_downloads_public_files_and_says_once(server, tmp_path, monkeypatch, caplog):
    use_fail_keyring(monkeypatch)
    assert resolve_token() is None
    server.set_file("eap_cal.fits", eap=True)
    products = [row(f"pub{i}_cal.fits") for i in range(3)] + [row("eap_cal.fits", FUTURE)]
    caplog.set_level(logging.DEBUG, logger="astroquery.mastbulk")
    table = MastMissionsClass(mission="jwst").download_products(products, download_dir=tmp_path, verbose=True)
    assert list(table["Status"]) == ["COMPLETE"] * 3 + ["ERROR"]
    for path in table["Local Path"][:3]:
        assert_file_matches(server, path)
    said = [r for r in caplog.records if "No MAST token found" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "keyring unavailable: NoKeyringError" in caplog.text


# -- clear auth errors per row -----------------------------------------------------------------

def test_future_release_without_token_is_refused_without_a_request(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    products = [row("pub_cal.fits"), row("eap_cal.fits", FUTURE), row("pub2_cal.fits", PAST)]
    client = MastMissionsClass(mission="jwst")
    table = client.download_products(products, download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE", "ERROR", "COMPLETE"]
    message = table["Message"][1]
    assert "exclusive access until 2099-01-01" in message
    assert "mastbulk login" in message and "MAST_API_TOKEN" in message
    assert server.requests(name="eap_cal.fits") == []


def test_401_without_token_says_how_to_log_in(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)  # no release date in the row: the server is asked
    table = MastMissionsClass(mission="jwst").download_products(
        [row("eap_cal.fits"), row("pub_cal.fits")], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["ERROR", "COMPLETE"]
    assert table["Message"][0].startswith("HTTP 401: this file needs authentication")
    assert "mastbulk login" in table["Message"][0] and "MAST_API_TOKEN" in table["Message"][0]
    assert authorization(server, "eap_cal.fits") == [None]


def test_rejected_token_says_where_to_make_a_new_one(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MAST_API_TOKEN", OTHER_TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("pub_cal.fits"), row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE", "ERROR"]
    assert "HTTP 401: the MAST token was rejected" in table["Message"][1]
    assert TOKEN_URL in table["Message"][1]
    assert len(server.requests(name="eap_cal.fits")) == 1  # an auth failure is not retried


def test_valid_token_without_access_is_a_403_error(server, tmp_path):
    store(TOKEN)
    server.forbidden.add("other_cal.fits")
    server.set_file("eap_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("other_cal.fits", FUTURE), row("eap_cal.fits", FUTURE), row("pub_cal.fits")],
        download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["ERROR", "COMPLETE", "COMPLETE"]
    assert table["Message"][0].startswith("HTTP 403: the MAST token was rejected or lacks access")
    assert_file_matches(server, table["Local Path"][1])


def test_public_rows_go_without_the_token_and_never_look_it_up(server, tmp_path, caplog):
    # No token anywhere: a look-up would say so at info level. Public rows need none.
    caplog.set_level(logging.DEBUG, logger="astroquery.mastbulk")
    table = MastMissionsClass(mission="jwst").download_products(
        [row("pub1_cal.fits", PAST), row("pub2_cal.fits", PAST)], download_dir=tmp_path, verbose=True)
    assert list(table["Status"]) == ["COMPLETE"] * 2
    assert "No MAST token found" not in caplog.text


def test_public_rows_do_not_send_a_stored_token(server, tmp_path):
    store(TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("pub_cal.fits", PAST), row("eap_cal.fits", FUTURE), row("undated_cal.fits")],
        download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE"] * 3
    assert authorization(server, "pub_cal.fits") == [None]
    assert authorization(server, "eap_cal.fits") == [f"token {TOKEN}"]
    assert authorization(server, "undated_cal.fits") == [f"token {TOKEN}"]  # unknown rights: as before


@pytest.mark.parametrize("stored", [True, False])
def test_a_public_row_the_server_refuses_is_asked_again_with_the_token(server, tmp_path, stored):
    # The notification said public, the archive says exclusive (an extended embargo): a 401
    # costs one more request with the token, if there is one.
    if stored:
        store(TOKEN)
    server.set_file("late_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("late_cal.fits", PAST)], download_dir=tmp_path, verbose=False)
    if stored:
        assert list(table["Status"]) == ["COMPLETE"]
        assert authorization(server, "late_cal.fits") == [None, f"token {TOKEN}"]
        assert_file_matches(server, table["Local Path"][0])
    else:
        assert list(table["Status"]) == ["ERROR"]
        assert table["Message"][0].startswith("HTTP 401: this file needs authentication")
        assert authorization(server, "late_cal.fits") == [None]


def test_a_refusal_from_an_untrusted_host_is_not_answered_with_the_token(server, second_server, tmp_path):
    store(TOKEN)
    server.add_fault("moved_cal.fits", "redirect", to=second_server.url)
    second_server.set_file("moved_cal.fits", eap=True)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("moved_cal.fits", PAST)], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["ERROR"] and "HTTP 401" in table["Message"][0]
    assert authorization(server, "moved_cal.fits") == [None]
    assert authorization(second_server, "moved_cal.fits") == [None]


# -- who may see it ----------------------------------------------------------------------------

def test_redirect_to_another_host_drops_the_token(server, second_server, tmp_path):
    store(TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    server.add_fault("eap_cal.fits", "redirect", to=second_server.url)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE"]
    assert authorization(server, "eap_cal.fits") == [f"token {TOKEN}"]
    seen = second_server.requests(name="eap_cal.fits")
    assert len(seen) == 1 and "authorization" not in seen[0].headers
    assert all(TOKEN not in value for r in second_server.requests() for value in r.headers.values())


def test_redirect_back_to_the_trusted_host_gets_the_token_again(server, second_server, tmp_path):
    store(TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    server.add_fault("eap_cal.fits", "redirect", to=second_server.url)
    second_server.add_fault("eap_cal.fits", "redirect", to=server.url)
    table = MastMissionsClass(mission="jwst").download_products(
        [row("eap_cal.fits", FUTURE)], download_dir=tmp_path, verbose=False)
    assert list(table["Status"]) == ["COMPLETE"], table["Message"][0]
    assert authorization(server, "eap_cal.fits") == [f"token {TOKEN}"] * 2
    assert authorization(second_server, "eap_cal.fits") == [None]
    assert_file_matches(server, table["Local Path"][0])


@pytest.mark.parametrize("configured, url, trusted", [
    ("https://mast.stsci.edu", "https://mast.stsci.edu/search/jwst/x", True),
    ("https://mast.stsci.edu", "https://MAST.stsci.edu:443/x", True),
    ("https://mast.stsci.edu", "http://mast.stsci.edu/x", False),           # https -> http downgrade
    ("https://mast.stsci.edu", "https://archive.stsci.edu/x", True),        # *.stsci.edu over https
    ("https://mast.stsci.edu", "http://archive.stsci.edu/x", False),
    ("https://mast.stsci.edu", "https://stsci.edu/x", False),
    ("https://mast.stsci.edu", "https://evilstsci.edu/x", False),
    ("https://mast.stsci.edu", "https://mast.stsci.edu.evil.com/x", False),
    ("https://mast.stsci.edu", "https://mast.stsci.edu@evil.com/x", False),  # userinfo, not host
    ("https://mast.stsci.edu", "https://evil.com/x?next=https://mast.stsci.edu", False),
    ("https://mast.stsci.edu", "ftp://mast.stsci.edu/x", False),
    ("https://mast.example.org", "https://mast.example.org/x", True),       # the configured server
    ("https://mast.example.org", "https://mast.example.org:8443/x", False),  # another port
    ("https://mast.example.org", "https://files.example.org/x", False),
    ("http://mast.example.org", "http://mast.example.org/x", False),        # plain http, not loopback
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/x", True),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x", False),
    ("http://127.0.0.1:8080", "http://127.0.0.2:8080/x", False),
    ("http://[::1]:8080", "http://[::1]:8080/x", True),
    ("http://localhost:8080", "http://localhost:8080/x", True),
    ("https://127.0.0.1:8443", "http://127.0.0.1:8443/x", False),           # downgrade on loopback too
])
def test_trusted_hosts(configured, url, trusted):
    assert (url in TrustedHosts(configured)) is trusted
    headers = TokenAuth(TOKEN, TrustedHosts(configured))(url)
    assert headers == ({"Authorization": f"token {TOKEN}"} if trusted else {})


def test_trusted_hosts_are_configurable():
    assert "https://files.example.org/x" not in token_auth(TOKEN, "https://mast.stsci.edu").trusted
    with conf.set_temp("trusted_hosts", ["*.example.org"]):
        trusted = token_auth(TOKEN, "https://mast.stsci.edu").trusted
        assert "https://files.example.org/x" in trusted
        assert "http://files.example.org/x" not in trusted      # still https only
        assert "https://archive.stsci.edu/x" not in trusted     # the default pattern was replaced
        assert "https://mast.stsci.edu/x" in trusted            # the configured server always is
    assert "https://archive.stsci.edu/x" in token_auth(TOKEN, "https://mast.stsci.edu").trusted


def test_no_token_means_no_header_anywhere(server):
    auth_ = token_auth(None, server.url, verbose=False)
    assert not auth_ and auth_(server.url + "/x") == {}


# -- login / logout / whoami -------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_login_checks_with_whoami_only_and_stores(server, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: never prompts
    client = MastMissionsClass(mission="jwst")
    assert client.login(token=TOKEN, store_token=True) is True
    assert [r.path for r in server.requests()] == ["/whoami"]
    assert keyring.get_password(KEYRING_SERVICE, KEYRING_USER) == TOKEN
    assert client._mastbulk_token == TOKEN and client._authenticated
    assert client.whoami() == "Ada Lovelace (MAST token from argument)"
    cookie, = [c for c in client._session.cookies if c.name == "mast_token"]
    assert cookie.domain == server.host  # astroquery's queries see the login; other hosts never do
    client.logout()
    assert client._mastbulk_token is None and "mast_token" not in client._session.cookies
    assert "from keyring" in client.whoami()  # logout keeps the stored token...
    client.logout(forget=True)                 # ...until asked to delete it
    assert keyring.get_password(KEYRING_SERVICE, KEYRING_USER) is None
    assert client.whoami().startswith("anonymous: no MAST token found")


def test_login_uses_env_then_keyring_without_prompting(server, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("prompted although a token exists"))
    store(TOKEN)
    client = MastMissionsClass()
    assert client.login() and client._mastbulk_token == TOKEN
    server.tokens[ENV_TOKEN] = "Env User"
    monkeypatch.setenv("MAST_API_TOKEN", ENV_TOKEN)
    assert client.login() and client._mastbulk_token == ENV_TOKEN


def test_login_prompts_only_when_interactive(server, monkeypatch):
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or TOKEN)
    client = MastMissionsClass()
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    with pytest.raises(LoginError, match="no terminal to ask"):
        client.login()
    assert asked == []
    monkeypatch.setattr(sys, "stdin", _Terminal())
    assert client.login() and client._mastbulk_token == TOKEN and len(asked) == 1
    store(OTHER_TOKEN)
    assert client.login(reenter_token=True, store_token=True)  # reenter: asks although one is stored
    assert len(asked) == 2 and keyring.get_password(KEYRING_SERVICE, KEYRING_USER) == TOKEN


def test_rejected_login_is_not_stored(server, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    client = MastMissionsClass()
    with pytest.raises(LoginError) as raised:
        client.login(token=OTHER_TOKEN, store_token=True)
    assert "rejected" in str(raised.value) and TOKEN_URL in str(raised.value)
    assert keyring.get_password(KEYRING_SERVICE, KEYRING_USER) is None
    assert client._mastbulk_token is None


def test_store_without_a_usable_keyring_says_what_to_do(server, monkeypatch):
    use_fail_keyring(monkeypatch)
    with pytest.raises(LoginError, match="set MAST_API_TOKEN instead"):
        MastMissionsClass().login(token=TOKEN, store_token=True)
    with pytest.raises(LoginError, match="cannot delete"):
        auth.forget_token(delete_stored=True)


def test_whoami_never_sends_the_token_to_an_untrusted_server():
    with pytest.raises(LoginError, match="refusing to send the MAST token"):
        auth.session_info("http://mast.example.org", TOKEN)  # plain http, not loopback: no request


def test_whoami_reports_a_rejected_token(server, monkeypatch):
    monkeypatch.setenv("MAST_API_TOKEN", OTHER_TOKEN)
    said = auth.whoami(server.url)
    assert said.startswith("anonymous: the MAST token from MAST_API_TOKEN was rejected") and TOKEN_URL in said


# -- never leaked ------------------------------------------------------------------------------

def _texts_of(exc):
    return [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]


def test_token_never_leaks(server, second_server, tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="astroquery.mastbulk")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    store(TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    server.set_file("moved_cal.fits", eap=True)
    server.add_fault("moved_cal.fits", "redirect", to=second_server.url)
    server.forbidden.add("denied_cal.fits")
    server.missing.add("gone_cal.fits")
    products = [row("eap_cal.fits", FUTURE), row("moved_cal.fits", FUTURE), row("denied_cal.fits"),
                row("gone_cal.fits"), row("pub_cal.fits")]
    client = MastMissionsClass(mission="jwst", mast_token=TOKEN)
    table = client.download_products(products, download_dir=tmp_path, verbose=True)
    assert list(table["Status"]) == ["COMPLETE", "COMPLETE", "ERROR", "ERROR", "COMPLETE"]
    write_manifest(table, tmp_path / "manifest.ecsv")
    write_manifest(table, tmp_path / "manifest.html")

    jobs = plan_jobs(load_rows(products), server=server.url, download_dir=tmp_path)
    token_auth_ = token_auth(None, server.url)
    results = run_jobs(jobs, auth=token_auth_)
    texts = [caplog.text, *(r.getMessage() for r in caplog.records), *capfd.readouterr(),
             "\n".join(table.pformat(max_lines=-1, max_width=-1)), str(list(map(str, table.itercols()))),
             (tmp_path / "manifest.ecsv").read_text(), (tmp_path / "manifest.html").read_text(),
             repr(client), repr(token_auth_), repr(token_auth_.trusted),
             repr(Downloader(authorize=token_auth_)), repr(jobs), repr(results), repr(results_table(results))]
    for call in (lambda: client.login(token=OTHER_TOKEN), lambda: auth.session_info("http://x.org", TOKEN),
                 lambda: auth.check_token(OTHER_TOKEN, server.url)):
        with pytest.raises(LoginError) as raised:
            call()
        texts += _texts_of(raised.value)
    assert any(f"token {TOKEN}" == value for value in authorization(server, "eap_cal.fits"))  # it was used
    assert [t for t in texts if TOKEN in t or OTHER_TOKEN in t] == []


def test_logging_filter_masks_resolved_tokens(caplog, monkeypatch):
    monkeypatch.setenv("MAST_API_TOKEN", ENV_TOKEN)
    assert resolve_token() == ENV_TOKEN  # resolving registers it with the mask
    caplog.set_level(logging.DEBUG, logger="astroquery.mastbulk")
    log.warning("token in args: %s", ENV_TOKEN)
    log.info(f"token in msg: {ENV_TOKEN}")
    log.debug("token in a mapping: %(t)s", {"t": ENV_TOKEN})
    log.info("token in an object's str: %s", RuntimeError(f"Authorization: token {ENV_TOKEN}"))
    try:
        raise RuntimeError(f"boom {ENV_TOKEN}")
    except RuntimeError:
        log.exception("token in a traceback")
    log.info("nothing secret %d%%", 5)
    formatted = [logging.Formatter("%(message)s").format(r) for r in caplog.records]
    assert len(formatted) == 6
    assert ENV_TOKEN not in caplog.text and all(ENV_TOKEN not in text for text in formatted)
    assert sum(MASK in text for text in formatted) == 5
    assert formatted[-1] == "nothing secret 5%"
