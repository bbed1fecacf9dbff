"""Engine defaults, read from `astroquery_mastbulk.conf` only when something may have changed them.

astropy's configuration system costs ~0.2 s to import, which the ``mastbulk`` command should not
pay when neither a config file nor a prior ``conf`` change exists. `DEFAULTS` names the settings
it may change; `astroquery_mastbulk.config` declares its items from them.
"""

import os
import sys

from .transfer import EngineSettings

__all__ = ["DEFAULTS", "TRUSTED_HOSTS", "engine_settings", "trusted_patterns"]

#: The configurable engine settings and their built-in values, taken from `EngineSettings`
#: itself so that the two cannot disagree.
DEFAULTS = {name: EngineSettings._field_defaults[name] for name in
            ("max_workers", "connect_timeout", "read_timeout", "retries", "backoff", "backoff_max",
             "retry_after_max")}
TRUSTED_HOSTS = ["*.stsci.edu"]


def _config_files():
    # Every place some astropy version reads a package config file from (astropy >= 8 drops the
    # "config" sub-folder); a false positive only costs the import we hoped to skip.
    home = os.path.expanduser("~")
    roots = [os.environ.get("ASTROPY_CONFIG_DIR", ""), os.environ.get("XDG_CONFIG_HOME", ""),
             os.path.join(home, ".config")]
    folders = [os.path.join(root, "astropy") for root in roots if root]
    folders += [os.path.join(folder, "config") for folder in folders]
    folders.append(os.path.join(home, ".astropy", "config"))
    return [os.path.join(folder, "astroquery_mastbulk.cfg") for folder in folders]


def _conf():
    """`astroquery_mastbulk.conf` if it may hold non-default values, else None."""
    if "astroquery_mastbulk.config" in sys.modules or any(map(os.path.exists, _config_files())):
        from .config import conf
        return conf
    return None


def engine_settings(*, max_workers=None, cache=True):
    """Engine settings from the configuration, with per-call overrides.

    Parameters
    ----------
    max_workers : int, optional
        Files transferred at once; default ``conf.max_workers`` (8).
    cache : bool, optional
        Skip files already complete on disk.

    Returns
    -------
    `~astroquery_mastbulk.transfer.EngineSettings`
    """
    conf = _conf()
    values = {name: type(default)(getattr(conf, name)) if conf is not None else default
              for name, default in DEFAULTS.items()}
    if max_workers is not None:
        values["max_workers"] = int(max_workers)
    return EngineSettings(cache=bool(cache), **values)


def trusted_patterns():
    """Host patterns trusted with the token besides the configured server."""
    conf = _conf()
    return list(conf.trusted_hosts) if conf is not None else list(TRUSTED_HOSTS)
