"""``Table.read(path, format="mast.subscription")``: our reader in astropy's unified I/O registry."""

import sys

__all__ = ["FORMAT", "register", "register_when_astropy_table_loads"]

FORMAT = "mast.subscription"


def _read(source, flat=False):
    from .subscription import read_subscription
    return read_subscription(source, flat=flat)


def register():
    """Register the ``mast.subscription`` reader with astropy's unified I/O registry (idempotent)."""
    from astropy.io import registry
    from astropy.table import Table
    if FORMAT not in registry.get_formats(Table, "Read")["Format"]:
        registry.register_reader(FORMAT, Table, _read)


class _RegisterAfterImport:
    # astropy has no entry point for I/O formats, and importing astropy.table costs ~0.4 s,
    # which the command line must not pay. So we wait for whoever imports astropy.table
    # and register right after it has loaded. A meta path finder needs only ``find_spec``:
    # not subclassing importlib.abc.MetaPathFinder spares every start-up its ~10 ms import.
    def find_spec(self, name, path, target=None):
        if name != "astropy.table":
            return None
        sys.meta_path.remove(self)
        from importlib.util import find_spec  # here: at import, it costs every start ~1.5 ms
        spec = find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                register()
            spec.loader.exec_module = exec_module
        return spec


def register_when_astropy_table_loads():
    """Register now if astropy.table is loaded, else as soon as something imports it."""
    if "astropy.table" in sys.modules:
        register()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
