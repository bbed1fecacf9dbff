"""Content checks beyond length: the CHECKSUM / DATASUM keywords of FITS files.

`fits_problem` is the ``check`` the engine runs on a whole file before renaming it into place
when ``verify=True``. astropy.io.fits does the arithmetic (the FITS standard's 32-bit ones'
complement sums); it is imported only when a file is checked.
"""

import warnings

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
    # astropy reports a failed sum as a warning, one per HDU and keyword: collect them.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Opening every HDU checks the sums; standard-compliance is not our business here.
            with fits.open(path, checksum=True, memmap=False, lazy_load_hdus=False):
                pass
        except Exception as err:  # astropy raises many kinds on a mangled file (OSError, VerifyError...)
            return f"FITS file does not verify: {type(err).__name__}: {err}"
    failures = [str(w.message).strip().rstrip(".") for w in caught if "verification failed" in str(w.message)]
    return "FITS " + "; ".join(failures) if failures else None
