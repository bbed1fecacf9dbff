"""Where the MAST token comes from, and which hosts may ever see it."""

import fnmatch
import ipaddress
import os
from urllib.parse import urlsplit
from .logger import log

__all__ = ["KEYRING_SERVICE", "KEYRING_USER", "TOKEN_ENV", "resolve_token", "TrustedHosts", "TokenAuth",
           "auth_failure_message", "TOKEN_URL", "token_auth"]


#: The keyring entry astroquery's own ``login(store_token=True)`` writes.
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"
TOKEN_ENV = "MAST_API_TOKEN"
TOKEN_URL = "https://auth.mast.stsci.edu/token?suggested_name=Astroquery&suggested_scope=mast:exclusive_access"


def keyring_token():
    """The token stored in the OS keyring, or None when there is none or no usable keyring."""
    try:
        import keyring
        return keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
    except Exception as err:  # no backend, a locked keyring, a broken D-Bus: public files still download
        log.debug("keyring unavailable: %s", type(err).__name__)
        return None


def resolve_token(explicit=None):
    """Find the MAST token: explicit, then ``$MAST_API_TOKEN``, then the OS keyring.

    Parameters
    ----------
    explicit : str, optional
        A token given by the caller (``mast_token=`` or ``login(token=...)``).

    Returns
    -------
    str or None
        The token, or None if none is found (public files need none).
    """
    for token in (explicit, os.environ.get(TOKEN_ENV)):
        if token and token.strip():
            return token.strip()
    return keyring_token()


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TrustedHosts:
    """The hosts that may receive the token: the configured server's, and ``*.stsci.edu``, over https.

    Plain http is trusted only for the configured server itself, and only when it is a loopback
    address (the bundled test server and the demo).

    Parameters
    ----------
    server : str
        The configured MAST server URL (``astroquery.mast.conf.server``).
    patterns : list of str, optional
        Host glob patterns also trusted over https; default ``["*.stsci.edu"]``.
    """

    def __init__(self, server, patterns=("*.stsci.edu",)):
        parts = urlsplit(server)
        self.server = (parts.scheme, parts.hostname, parts.port or _default_port(parts.scheme))
        self.patterns = tuple(p.lower() for p in patterns)

    def __repr__(self):
        scheme, host, port = self.server
        return f"TrustedHosts(server='{scheme}://{host}:{port}', patterns={list(self.patterns)})"

    def __contains__(self, url):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        origin = (parts.scheme, host, parts.port or _default_port(parts.scheme))
        if origin == self.server:
            return parts.scheme == "https" or _is_loopback(host)
        if parts.scheme != "https":
            return False
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns)


def _default_port(scheme):
    return {"http": 80, "https": 443}.get(scheme)


class TokenAuth:
    """Gives the ``Authorization`` header to trusted URLs only; its repr never shows the token.

    Parameters
    ----------
    token : str or None
        The MAST token.
    trusted : TrustedHosts
        Which URLs may receive it.
    """

    def __init__(self, token, trusted):
        self._token = token
        self.trusted = trusted

    def __bool__(self):
        return bool(self._token)

    def __repr__(self):
        return f"TokenAuth(token={'<set>' if self._token else None}, trusted={self.trusted!r})"

    def __call__(self, url):
        if self._token and url in self.trusted:
            return {"Authorization": f"token {self._token}"}
        return {}


def token_auth(explicit=None, server=None, *, verbose=True):
    """The token (explicit, ``$MAST_API_TOKEN`` or keyring) bound to the hosts trusted with it.

    Parameters
    ----------
    explicit : str, optional
        A token given by the caller.
    server : str
        The configured MAST server URL.
    verbose : bool, optional
        Say at info level when no token is found.

    Returns
    -------
    TokenAuth
        False in a boolean context when no token was found.
    """
    from .defaults import trusted_patterns
    token = resolve_token(explicit)
    if token is None and verbose:
        log.info("No MAST token found (argument, MAST_API_TOKEN or keyring): downloading public files only")
    return TokenAuth(token, TrustedHosts(server, trusted_patterns()))


def auth_failure_message(status, have_token):
    """The explanation of a 401/403 answer, telling the user what to do next."""
    if not have_token:
        return (f"HTTP {status}: this file needs authentication (exclusive access); log in with "
                f"`mastbulk login` or set {TOKEN_ENV}")
    return (f"HTTP {status}: the MAST token was rejected or lacks access to this file; "
            f"make a new one at {TOKEN_URL}")
