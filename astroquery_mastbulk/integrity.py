"""Content checks beyond length: the CHECKSUM / DATASUM keywords of FITS files.

`fits_problem` is the ``check`` the engine runs on a whole file before renaming it into place
when ``verify=True``. astropy.io.fits does the arithmetic (the FITS standard's 32-bit ones'
complement sums); it is imported only when a file is checked.
"""

__all__ = ["fits_problem"]

_FITS_MAGIC = b"SIMPLE  ="


def fits_problem(path):
    """Why the FITS file at ``path`` fails its CHECKSUM/DATASUM keywords, or None.

    Files that are not (uncompressed) FITS, and HDUs without the keywords, pass: there is
    nothing to check them against.

    Parameters
    ----------
    path : str or os.PathLike
        The file to check; its name does not matter (the FITS signature is read).

    Returns
    -------
    str or None
        A one-line reason, or None if the file passes.
    """
    with open(path, "rb") as stream:
        if stream.read(len(_FITS_MAGIC)) != _FITS_MAGIC:
            return None
    from astropy.io import fits
    failures = []
    try:
        # verify_checksum/verify_datasum answer 0 (mismatch), 1 (match) or 2 (no keyword). They are
        # used rather than fits.open(checksum=True), which reports through warnings: a global state
        # that threads checking files at once would share.
        # Our own file object: astropy leaves its own open when a mangled file fails to parse.
        with open(path, "rb") as stream, fits.open(stream, memmap=False, lazy_load_hdus=False) as hdus:
            for index, hdu in enumerate(hdus):
                verdicts = (("CHECKSUM", hdu.verify_checksum()), ("DATASUM", hdu.verify_datasum()))
                for keyword, verdict in verdicts:
                    if verdict == 0:
                        failures.append(f"{keyword} of HDU {index} ({hdu.name}) does not match")
    except Exception as err:  # astropy raises many kinds on a mangled file (OSError, VerifyError...)
        return f"FITS file does not verify: {type(err).__name__}: {err}"
    return "FITS " + "; ".join(failures) if failures else None
