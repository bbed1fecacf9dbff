"""User-settable defaults, in astropy's configuration system beside astroquery's own."""

from astropy import config as _config

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astroquery_mastbulk`.

    Set them as for astroquery (``astroquery_mastbulk.conf.max_workers = 16``) or in the
    ``[astroquery_mastbulk]`` section of astropy's configuration file.
    """

    max_workers = _config.ConfigItem(8, "Number of files transferred at once.")
    connect_timeout = _config.ConfigItem(10.0, "Seconds to wait for a connection to the server.")
    read_timeout = _config.ConfigItem(60.0, "Seconds to wait for the server between two reads.")
    retries = _config.ConfigItem(5, "Retries of one file after a transient failure (5xx, 429, cut connection).")
    backoff = _config.ConfigItem(0.5, "First retry delay in seconds; doubles each retry, with jitter.")
    backoff_max = _config.ConfigItem(30.0, "Longest delay between two retries, in seconds.")
    retry_after_max = _config.ConfigItem(120.0, "Longest Retry-After wait honoured, in seconds.")
    trusted_hosts = _config.ConfigItem(
        ["*.stsci.edu"], "Hosts (glob patterns) besides the configured server that may receive the MAST token.",
        cfgtype="string_list")


conf = Conf()
