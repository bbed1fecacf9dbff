"""Deterministic, position-dependent file contents for the test server.

Every byte of a served file is a pure function of ``(name, version, offset)``,
so a client can be checked byte for byte without storing anything, and a
download resumed at the wrong offset (or mixing two versions) is detectable.

Contents are built from one 64 KiB pseudo-random base block per
``(name, version)``; block ``i`` of a file is the base block with its first
8 bytes XOR'd with ``i``.  Generating a chunk is therefore a memcpy plus a few
tiny patches, which keeps throughput in the GB/s range.
"""

import functools
import hashlib
import struct

__all__ = ["BLOCK_SIZE", "FITS_BLOCK", "file_size", "file_bytes",
           "iter_file_bytes", "file_sha256"]

#: Size of the repeating pseudo-random block (bytes).
BLOCK_SIZE = 1 << 16
#: FITS files are multiples of this many bytes.
FITS_BLOCK = 2880

_HEADER = struct.Struct("<Q")
# Chunks never exceed this many base blocks, bounding per-chunk memory.
_MAX_BLOCKS_PER_CHUNK = 256


def _seed(name, version):
    return f"mastbulk:{version}:{name}".encode("utf-8", "surrogatepass")


def file_size(name, version=0):
    """Default size of a file that was not configured explicitly.

    Parameters
    ----------
    name : str
        File (product) name.
    version : int, optional
        Accepted for symmetry with the other helpers.  It does not change the
        size, because a reprocessed file keeps its size unless told otherwise.

    Returns
    -------
    int
        A multiple of 2880 bytes, between 1 and 16 FITS blocks.
    """
    digest = hashlib.sha256(("size:" + name).encode("utf-8", "surrogatepass")).digest()
    return FITS_BLOCK * (1 + digest[0] % 16)


@functools.lru_cache(maxsize=256)
def _base_block(name, version):
    return hashlib.shake_256(_seed(name, version)).digest(BLOCK_SIZE)


@functools.lru_cache(maxsize=16)
def _repeated_base(name, version, nblocks):
    # Cached so a chunk costs one copy of this, not nblocks concatenations.
    return _base_block(name, version) * nblocks


def _chunk(name, version, first_block, nblocks):
    """Return blocks ``[first_block, first_block + nblocks)`` as a bytearray."""
    base = _base_block(name, version)
    buf = bytearray(_repeated_base(name, version, nblocks))
    head = _HEADER.unpack_from(base)[0]
    for k in range(nblocks):
        _HEADER.pack_into(buf, k * BLOCK_SIZE, head ^ (first_block + k))
    return buf


def iter_file_bytes(name, size, start=0, end=None, version=0, chunk=1 << 20):
    """Yield the content of the byte range ``[start, end)`` of a file.

    Parameters
    ----------
    name : str
        File name; different names give unrelated content.
    size : int
        Total size of the file; ``end`` is clipped to it.
    start, end : int, optional
        Byte range, end exclusive.  ``end=None`` means the end of the file.
    version : int, optional
        Content version; each version gives different content.
    chunk : int, optional
        Approximate size of the yielded pieces (rounded to whole 64 KiB blocks).

    Yields
    ------
    memoryview
        Consecutive pieces whose concatenation is the requested range.
    """
    end = size if end is None else min(end, size)
    start = max(0, start)
    nper = max(1, min(_MAX_BLOCKS_PER_CHUNK, chunk // BLOCK_SIZE))
    block = start // BLOCK_SIZE
    while start < end:
        window_start = block * BLOCK_SIZE
        last_block = min(block + nper, -(-end // BLOCK_SIZE))
        buf = _chunk(name, version, block, last_block - block)
        piece_end = min(end, last_block * BLOCK_SIZE)
        yield memoryview(buf)[start - window_start:piece_end - window_start]
        start, block = piece_end, last_block


def file_bytes(name, size, start=0, end=None, version=0):
    """Return the content of the byte range ``[start, end)`` of a file.

    Parameters
    ----------
    name : str
        File name.
    size : int
        Total size of the file.
    start, end : int, optional
        Byte range, end exclusive; ``end=None`` means the end of the file.
    version : int, optional
        Content version.

    Returns
    -------
    bytes
    """
    return b"".join(iter_file_bytes(name, size, start, end, version))


@functools.lru_cache(maxsize=1024)
def file_sha256(name, size, version=0):
    """Hex SHA-256 of a whole file's content.

    Parameters
    ----------
    name : str
        File name.
    size : int
        Total size of the file.
    version : int, optional
        Content version.

    Returns
    -------
    str
        Lower-case hexadecimal digest.
    """
    digest = hashlib.sha256()
    for piece in iter_file_bytes(name, size, version=version):
        digest.update(piece)
    return digest.hexdigest()
