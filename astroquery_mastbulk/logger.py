"""The package logger: a child of astroquery's, so ``astroquery.log`` settings apply to it."""

import logging

__all__ = ["log"]


class _AstropyRecordFields(logging.Filter):
    # astropy's handler (on astroquery's logger) formats ``record.origin``, which only records
    # made by an AstropyLogger carry. Our logger is a plain child, so we add the field, and
    # astroquery itself need not be imported just to log.
    def filter(self, record):
        if not hasattr(record, "origin"):
            record.origin = record.name
        return True


log = logging.getLogger("astroquery.mastbulk")
log.addFilter(_AstropyRecordFields())
