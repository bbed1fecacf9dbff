"""User-settable defaults, in astropy's configuration system beside astroquery's own."""

from astropy import config as _config

from .defaults import DEFAULTS, TRUSTED_HOSTS

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astroquery_mastbulk`.

    Set them as for astroquery (``astroquery_mastbulk.conf.max_workers = 16``) or in the
    ``[config]`` section of ``astroquery_mastbulk.cfg`` in astropy's configuration folder.
    """

    max_workers = _config.ConfigItem(DEFAULTS["max_workers"], "Number of files transferred at once.")
    connect_timeout = _config.ConfigItem(DEFAULTS["connect_timeout"], "Seconds to wait for a connection.")
    read_timeout = _config.ConfigItem(DEFAULTS["read_timeout"],
                                      "Seconds to wait for the server between reads.")
    retries = _config.ConfigItem(DEFAULTS["retries"],
                                 "Retries of one file after a transient failure (5xx, 429, cut connection).")
    backoff = _config.ConfigItem(DEFAULTS["backoff"], "First retry delay in seconds; doubles, with jitter.")
    backoff_max = _config.ConfigItem(DEFAULTS["backoff_max"],
                                     "Longest delay between two retries, in seconds.")
    retry_after_max = _config.ConfigItem(DEFAULTS["retry_after_max"],
                                         "Longest Retry-After honoured, in seconds.")
    trusted_hosts = _config.ConfigItem(
        TRUSTED_HOSTS, "Hosts (glob patterns) besides the configured server that may receive the MAST token.",
        cfgtype="string_list")


conf = Conf()
