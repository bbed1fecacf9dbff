"""astroquery-mastbulk: MAST subscription products to disk, fast, resumable, and safe with your token.

>>> from astroquery_mastbulk import MastMissions          # doctest: +SKIP
>>> MastMissions.download_products("event_metadata_jwst-program-5105_hourly.json")  # doctest: +SKIP

Heavy parts (astroquery, astropy tables) are imported on first use, so the ``mastbulk``
command starts quickly.
"""

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily (PEP 562).
_LAZY = {
    "MastMissions": "missions", "MastMissionsClass": "missions", "enable": "missions", "disable": "missions",
    "Observations": "observations", "ObservationsClass": "observations",
    "get_product_list_chunked": "observations",
    "read_subscription": "subscription", "load_rows": "subscription",
    "conf": "config", "Conf": "config",
    "MastBulkError": "errors", "InputError": "errors", "TransferError": "errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__


def _register_io():
    from .io_registry import register_when_astropy_table_loads
    register_when_astropy_table_loads()


_register_io()
