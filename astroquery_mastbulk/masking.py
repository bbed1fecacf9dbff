"""The secrets (MAST tokens) this process has resolved, and how to hide them in any text.

A module of its own, without `logging`, so that registering a token costs nothing at start-up:
the package logger (`~astroquery_mastbulk.logger`) applies this mask to every record it passes.
"""

import threading

__all__ = ["mask_secret", "masked", "has_secrets", "MASK"]

#: What a token is replaced with in log records.
MASK = "[MAST token masked]"
# Shorter strings are too likely to appear by chance, and hiding them would mangle messages.
_MIN_SECRET_LENGTH = 6
_secrets = set()
_secrets_lock = threading.Lock()


def mask_secret(value):
    """Have the package logger mask ``value`` (a token) in every later record.

    Parameters
    ----------
    value : str or None
        The secret; None, empty or very short values are ignored.
    """
    if isinstance(value, str) and len(value.strip()) >= _MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value.strip())


def masked(text):
    """``text`` with every registered secret replaced by `MASK`.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: one may contain another
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def has_secrets():
    """Whether any secret has been registered (when none has, there is nothing to mask)."""
    return bool(_secrets)
