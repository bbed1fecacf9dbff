"""The package logger: a child of astroquery's, so ``astroquery.log`` settings apply to it.

It also masks every MAST token this process has resolved (`~astroquery_mastbulk.masking`), in the
message, its arguments and a formatted traceback: code should never log a token, and this filter
is the second line of defence if some message ever does.
"""

import logging

from .masking import MASK, has_secrets, mask_secret, masked

__all__ = ["log", "mask_secret", "masked", "MASK"]


class _AstropyRecordFields(logging.Filter):
    # astropy's handler (on astroquery's logger) formats ``record.origin``, which only records
    # made by an AstropyLogger carry. Our logger is a plain child, so we add the field, and
    # astroquery itself need not be imported just to log.
    def filter(self, record):
        if not hasattr(record, "origin"):
            record.origin = record.name
        return True


class _MaskSecrets(logging.Filter):
    """Replaces registered secrets in a record before any handler (ours or a parent's) sees it."""

    def filter(self, record):
        if not has_secrets():
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it later, with the raw fields
            return True
        safe = masked(message)
        if safe != message:
            # The merged, masked text replaces msg + args: an argument's str() may hold the token.
            record.msg, record.args = safe, ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so a masked traceback is what they print.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = masked(record.exc_text)
        if record.stack_info:
            record.stack_info = masked(record.stack_info)
        return True


log = logging.getLogger("astroquery.mastbulk")
log.addFilter(_AstropyRecordFields())
log.addFilter(_MaskSecrets())
