"""Configuration: astropy's config file reaches both the Python call and the command line."""

import os
import subprocess
import sys

from astroquery_mastbulk import MastMissions, conf
from astroquery_mastbulk.defaults import engine_settings


def test_conf_changes_reach_the_engine():
    with conf.set_temp("max_workers", 3), conf.set_temp("retries", 1):
        settings = engine_settings()
    assert (settings.max_workers, settings.retries) == (3, 1)
    assert engine_settings(max_workers=5, cache=False).max_workers == 5


def test_config_file_is_read_without_importing_conf_first(tmp_path, private_keyring):
    # Where the installed astropy itself reads it (the CLI must not skip it to save an import).
    env = dict(os.environ, XDG_CONFIG_HOME=str(private_keyring / ".config"))
    where = subprocess.run([sys.executable, "-c", "from astropy.config import get_config;"
                            "print(get_config('astroquery_mastbulk').filename)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    os.makedirs(os.path.dirname(where), exist_ok=True)
    with open(where, "w") as stream:
        stream.write("[config]\nmax_workers = 1\n")
    code = ("import sys; from astroquery_mastbulk.defaults import engine_settings;"
            "print(engine_settings().max_workers)")
    env = dict(os.environ, XDG_CONFIG_HOME=str(private_keyring / ".config"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_max_workers_caps_concurrency(server, tmp_path):
    server.latency = 0.05
    try:
        rows = [{"filename": f"c{i}_cal.fits", "fileset": "s", "mission": "jwst"} for i in range(6)]
        with conf.set_temp("max_workers", 1):
            MastMissions.download_products(rows, download_dir=tmp_path, verbose=False)
    finally:
        server.latency = 0.0
    assert server.max_concurrency() == 1
