"""Shared fixtures: one loopback MAST server per session (reset per test), a fenced network,
a private file-backed keyring, and no token leaking in from the developer's environment."""

import os

import pytest

from astroquery_mastbulk.testing import MastServer

SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "astroquery_mastbulk", "data", "JWST.json")
TOKEN = "tok-3f9a7c1e5b2d4a6c8e0f1a3b5c7d9e1f"
OTHER_TOKEN = "tok-invalid-0000000000000000000000"


@pytest.fixture(scope="session")
def mast_server():
    with MastServer(tokens={TOKEN: "Ada Lovelace"}) as server:
        yield server


@pytest.fixture(scope="session")
def second_server():
    """Another loopback host: an untrusted place that redirects may point at."""
    with MastServer() as server:
        yield server


@pytest.fixture
def server(mast_server, second_server):
    """The MAST server, reset, and configured as astroquery's ``conf.server`` for this test."""
    from astroquery.mast import conf
    mast_server.reset()
    second_server.reset()
    mast_server.tokens = {TOKEN: "Ada Lovelace"}
    with conf.set_temp("server", mast_server.url):
        yield mast_server


@pytest.fixture(autouse=True)
def private_keyring(tmp_path, monkeypatch):
    """An empty file-backed keyring in a temporary home, chosen through keyring's own configuration."""
    import keyring.core
    home = tmp_path / "home"
    for folder in (home / ".local" / "share", home / ".config"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.delenv("MAST_API_TOKEN", raising=False)
    keyring.core.init_backend()
    yield home
    monkeypatch.undo()
    keyring.core.init_backend()


@pytest.fixture
def sample_path():
    return os.path.abspath(SAMPLE)
