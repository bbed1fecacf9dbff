"""Sphinx configuration of the astroquery-mastbulk documentation (sphinx-astropy conventions).

Build:    python -m sphinx -W --keep-going -b html docs docs/_build/html
Doctests: python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest
Every ``>>>`` example runs in the doctest build against the bundled local MAST server
(`astroquery_mastbulk.testing.MastServer`), in a temporary folder, with an in-memory keyring:
nothing leaves the machine and nothing touches your own keyring or files.
"""

import doctest as _doctest
from importlib.metadata import version as _version

# astropy's shared Sphinx settings: numpydoc options, default role, automodapi and theme defaults.
from sphinx_astropy.conf.v2 import *  # noqa: F401,F403

project = "astroquery-mastbulk"
author = "astroquery-mastbulk developers"
copyright = "astroquery-mastbulk developers"
release = _version("astroquery-mastbulk")
version = release

# sphinx-astropy's list minus the extensions this site does not use, and minus intersphinx:
# the build must work offline, so no inventories are fetched.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_automodapi.smart_resolver",
]
intersphinx_mapping = {}
exclude_patterns = ["_build"]

html_theme = "astropy-unified"  # astropy's own theme (astropy-sphinx-theme), bundled, no network needed
html_title = f"{project} {release}"
html_static_path = []
html_last_updated_fmt = None  # reproducible pages

autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

# -- doctests: every example runs against the bundled local MAST server ---------------------------------

doctest_global_setup = """
import os as _os
import shutil as _shutil
import tempfile as _tempfile

import keyring as _keyring
from keyring.backend import KeyringBackend as _KeyringBackend
from astroquery.mast import conf as _mast_conf

from astroquery_mastbulk.data import sample_notification as _sample_notification
from astroquery_mastbulk.testing import MastServer as _MastServer


class _MemoryKeyring(_KeyringBackend):
    # The examples store tokens: keep them in memory, never in the reader's own keyring.
    priority = 1

    def __init__(self):
        super().__init__()
        self._entries = {}

    def get_password(self, service, username):
        return self._entries.get((service, username))

    def set_password(self, service, username, password):
        self._entries[(service, username)] = password

    def delete_password(self, service, username):
        self._entries.pop((service, username), None)


_previous = {"keyring": _keyring.get_keyring(), "cwd": _os.getcwd(),
             "token": _os.environ.pop("MAST_API_TOKEN", None)}
_keyring.set_keyring(_MemoryKeyring())
_server = _MastServer(tokens={"tok-example-5105": "A. Astronomer"}).start()
_mast_conf.server = _server.url
_workdir = _tempfile.mkdtemp(prefix="mastbulk-doctest-")
_os.chdir(_workdir)
for _name in ("JWST.json", "event.json", "event_metadata_jwst-program-5105_hourly_20260422_143523.json"):
    _shutil.copyfile(_sample_notification(), _name)
"""

doctest_global_cleanup = """
_os.chdir(_previous["cwd"])
_shutil.rmtree(_workdir, ignore_errors=True)
_server.stop()
_mast_conf.reset("server")
_keyring.set_keyring(_previous["keyring"])
_os.environ.pop("MAST_API_TOKEN", None)
if _previous["token"] is not None:
    _os.environ["MAST_API_TOKEN"] = _previous["token"]
"""

# sphinx's defaults, and whitespace-insensitive: astropy pads table columns with trailing blanks.
doctest_default_flags = (_doctest.ELLIPSIS | _doctest.IGNORE_EXCEPTION_DETAIL
                         | _doctest.DONT_ACCEPT_TRUE_FOR_1 | _doctest.NORMALIZE_WHITESPACE)
