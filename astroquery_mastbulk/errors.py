"""The package's one exception family, with the URL, row and cause attached."""

__all__ = ["MastBulkError", "InputError", "TransferError"]


class MastBulkError(Exception):
    """Base class of every error raised by astroquery-mastbulk.

    Parameters
    ----------
    message : str
        One line that names the problem.
    url : str, optional
        The URL concerned, if any (never carries a token: tokens travel in headers only).
    row : int, optional
        The 1-based row number of the input concerned, if any.
    cause : BaseException, optional
        The lower-level exception this one translates.
    """

    def __init__(self, message, *, url=None, row=None, cause=None):
        super().__init__(message)
        self.url = url
        self.row = row
        self.cause = cause


class InputError(MastBulkError, ValueError):
    """Bad input: an unreadable notification, a row missing a field, a bad option."""


class TransferError(MastBulkError):
    """A transfer failed for good (after retries); carries the HTTP status if any."""

    def __init__(self, message, *, url=None, row=None, cause=None, status=None):
        super().__init__(message, url=url, row=row, cause=cause)
        self.status = status
