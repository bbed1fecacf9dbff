"""Bundled data: a sample MAST subscription notification."""

from importlib.resources import files

__all__ = ["sample_notification"]


def sample_notification():
    """Path of the bundled sample notification (MAST's JWST.json: three JWST products).

    Returns
    -------
    str
        Path to a JSON file shaped exactly like the notifications MAST mails to subscribers.
    """
    return str(files(__name__) / "JWST.json")
