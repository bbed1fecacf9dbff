"""Test helpers: a MAST-compatible HTTP server on loopback and its file contents.

Standard library only, so that importing it is fast and never drags in
astropy, astroquery or requests.
"""

from .content import file_bytes, file_sha256, file_size, iter_file_bytes
from .server import FAULT_KINDS, Fault, FileSpec, MastServer, RequestRecord

__all__ = ["MastServer", "FileSpec", "Fault", "RequestRecord", "FAULT_KINDS",
           "file_bytes", "file_sha256", "file_size", "iter_file_bytes"]
