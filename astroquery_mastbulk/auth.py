"""Where the MAST token comes from, which hosts may ever see it, and login / logout / whoami.

The token is looked up lazily, once per call: an explicit one, then ``$MAST_API_TOKEN``, then
the OS keyring entry astroquery's own ``login(store_token=True)`` writes. Every token found is
registered with the package logger's mask (`~astroquery_mastbulk.masking.mask_secret`).
"""

import fnmatch
import ipaddress
import os
import sys
import threading
from urllib.parse import urlsplit

from .errors import MastBulkError
from .masking import mask_secret

__all__ = ["KEYRING_SERVICE", "KEYRING_USER", "TOKEN_ENV", "TOKEN_URL", "LoginError", "resolve_token",
           "find_token", "TrustedHosts", "TokenAuth", "token_auth", "auth_failure_message", "session_info",
           "check_token", "prompt_token", "read_token", "store_token", "delete_stored_token", "login",
           "login_and_store", "forget_token", "whoami"]


#: The keyring entry astroquery's own ``login(store_token=True)`` writes.
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"
TOKEN_ENV = "MAST_API_TOKEN"
#: Where a MAST API token is made.
TOKEN_URL = ("https://auth.mast.stsci.edu/token"
             "?suggested_name=Astroquery&suggested_scope=mast:exclusive_access")
_LOGIN_HINT = f"log in with `mastbulk login` or set {TOKEN_ENV}"


class LoginError(MastBulkError):
    """A MAST token could not be obtained, checked, stored or deleted."""


def _keyring():
    import keyring  # imported on first use: it costs ~0.25 s and picks its backend then
    return keyring


def keyring_backend_name():
    """The name of the keyring backend in use (for messages), or ``"no keyring"``."""
    try:
        return _keyring().get_keyring().name  # e.g. "SecretService Keyring"
    except Exception:
        return "no keyring"


def keyring_token():
    """The token stored in the OS keyring, or None when there is none or no usable keyring."""
    try:
        token = _keyring().get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception as err:  # no backend, a locked keyring, a broken D-Bus: public files still download
        from .logger import log  # logging is imported only to log: it costs 5 ms at every start
        log.debug("keyring unavailable: %s", type(err).__name__)
        return None
    return token.strip() if token and token.strip() else None


def _given_token(explicit):
    """The token given without the keyring (argument, then environment) and its source, or None, None."""
    for token, source in ((explicit, "argument"), (os.environ.get(TOKEN_ENV), TOKEN_ENV)):
        if token and token.strip():
            return token.strip(), source
    return None, None


def find_token(explicit=None):
    """Find the MAST token and say where it came from.

    Parameters
    ----------
    explicit : str, optional
        A token given by the caller (``mast_token=`` or ``login(token=...)``); wins over the rest.

    Returns
    -------
    token : str or None
        The token, or None if none is found (public files need none).
    source : str or None
        ``"argument"``, ``"MAST_API_TOKEN"`` or ``"keyring"``.
    """
    token, source = _given_token(explicit)
    if token is not None:
        mask_secret(token)
        return token, source
    token = keyring_token()
    mask_secret(token)
    return token, ("keyring" if token else None)


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
    return find_token(explicit)[0]


# -- who may see it ----------------------------------------------------------------------------

def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_port(scheme):
    return {"http": 80, "https": 443}.get(scheme)


class TrustedHosts:
    """The hosts that may receive the token: the configured server's, and ``*.stsci.edu``, over https.

    Plain http is trusted only for the configured server itself, and only when it is a loopback
    address (the bundled test server and the demo). Any other scheme, host or port, and any
    https→http downgrade, is untrusted.

    Parameters
    ----------
    server : str
        The configured MAST server URL (``astroquery.mast.conf.server``).
    patterns : list of str, optional
        Host glob patterns also trusted over https; default ``["*.stsci.edu"]``
        (``astroquery_mastbulk.conf.trusted_hosts``).
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


class TokenAuth:
    """Gives the ``Authorization`` header to trusted URLs only; its repr never shows the token.

    Parameters
    ----------
    token : str or None
        The MAST token.
    trusted : TrustedHosts
        Which URLs may receive it.
    lookup : callable, optional
        ``lookup() -> str or None``, called once, when the token is first needed, if ``token``
        is None: a run that sends no request (every file known complete) never opens the keyring.
    """

    def __init__(self, token, trusted, *, lookup=None):
        mask_secret(token)
        self._token = token
        self._lookup = None if token else lookup
        self._lock = threading.Lock()
        self.trusted = trusted

    def _get(self):
        if self._lookup is not None:
            with self._lock:  # workers may all ask at once: look up once
                if self._lookup is not None:
                    token = self._lookup()
                    mask_secret(token)
                    self._token, self._lookup = token, None
        return self._token

    def __bool__(self):
        return bool(self._get())

    def __getstate__(self):  # to processes (Dask workers): with the token looked up, without the lock
        self._get()
        return {"_token": self._token, "trusted": self.trusted}

    def __setstate__(self, state):
        self.__dict__.update(state, _lookup=None, _lock=threading.Lock())

    def __repr__(self):
        return f"TokenAuth(token={'<set>' if self._get() else None}, trusted={self.trusted!r})"

    def __call__(self, url):
        if url in self.trusted and self._get():
            return {"Authorization": f"token {self._token}"}
        return {}


def _trusted(server):
    from .defaults import trusted_patterns
    return TrustedHosts(server, trusted_patterns())


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
        False in a boolean context when no token was found. The keyring, the slow source, is
        read only when the token is first needed (a request to a trusted host, or a truth test).
    """
    def from_keyring():  # on first need: the keyring costs ~0.1 s to open
        token = keyring_token()
        if token is None and verbose:
            from .logger import log
            log.info("No MAST token found (argument, MAST_API_TOKEN or keyring): "
                     "downloading public files only")
        return token

    given, _source = _given_token(explicit)
    return TokenAuth(given, _trusted(server), lookup=from_keyring)


def auth_failure_message(status, have_token):
    """The explanation of a 401/403 answer, telling the user what to do next."""
    if not have_token:
        return f"HTTP {status}: this file needs authentication (exclusive access); {_LOGIN_HINT}"
    return (f"HTTP {status}: the MAST token was rejected or lacks access to this file; "
            f"make a new one at {TOKEN_URL}")


# -- login / logout / whoami -------------------------------------------------------------------

def _default_server(server):
    if server:
        return server
    from astroquery.mast import conf  # costs ~0.6 s: only when no server is given
    return conf.server


def session_info(server, token=None, *, timeout=(10.0, 30.0)):
    """What ``{server}/whoami`` says about ``token`` (the only request login and whoami send).

    Parameters
    ----------
    server : str
        The MAST server URL.
    token : str, optional
        The token to ask about; sent only if the server is trusted with it.
    timeout : tuple of float, optional
        Connect and read timeouts in seconds.

    Returns
    -------
    dict
        MAST's answer: ``anon`` (bool) and ``attrib`` (``display_name``, ...).

    Raises
    ------
    LoginError
        If the server may not see the token, cannot be reached, or answers something else.
    """
    # One request: requests suffices (the engine's pooled client is for many). Imported here so
    # that `mastbulk logout` need not load it.
    import requests
    url = server.rstrip("/") + "/whoami"
    headers = TokenAuth(token, _trusted(server))(url)
    if token and not headers:
        raise LoginError(f"refusing to send the MAST token to {url}: only https, or plain http to a "
                         "loopback address, may carry it", url=url)
    try:
        # No redirects: the token goes to the configured server's /whoami and nowhere else.
        response = requests.get(url, headers={"Accept": "application/json", **headers},
                                timeout=timeout, allow_redirects=False)
        info = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError) as err:
        raise LoginError(f"cannot ask {url} who the token belongs to: {type(err).__name__}",
                         url=url, cause=err) from None
    if not isinstance(info, dict) or "anon" not in info:
        raise LoginError(f"{url} answered HTTP {response.status_code}, not MAST's /whoami answer", url=url)
    return info


def _display_name(info):
    attrib = info.get("attrib") or {}
    return attrib.get("display_name") or info.get("ezid") or "an authenticated MAST user"


def check_token(token, server):
    """The display name of the token's owner, asked of ``{server}/whoami``.

    Raises
    ------
    LoginError
        If MAST does not accept the token (or cannot be asked).
    """
    info = session_info(server, token)
    if info.get("anon", True):
        raise LoginError(f"the MAST token was rejected by {server}; make a new one at {TOKEN_URL}")
    return _display_name(info)


def prompt_token():
    """Ask for the token with a hidden prompt, only when a person is at the terminal.

    Raises
    ------
    LoginError
        When standard input is not a terminal, or nothing was typed.
    """
    if sys.stdin is None or not sys.stdin.isatty():
        raise LoginError(f"no MAST token given, and no terminal to ask for one: {_LOGIN_HINT} "
                         "(scripts: `mastbulk login --token-stdin`)")
    from getpass import getpass
    print(f"If you have no MAST API token yet, make one at {TOKEN_URL}", file=sys.stderr)
    token = getpass("MAST API token (input hidden): ").strip()
    if not token:
        raise LoginError("no MAST token was typed")
    mask_secret(token)
    return token


def read_token(stream):
    """The token on the first non-empty line of ``stream`` (``mastbulk login --token-stdin``)."""
    for line in stream:
        if line.strip():
            mask_secret(line)
            return line.strip()
    raise LoginError("no MAST token on standard input")


def store_token(token):
    """Write ``token`` to the OS keyring entry astroquery uses.

    Raises
    ------
    LoginError
        When no usable keyring is available (a headless machine, a locked keyring).
    """
    try:
        _keyring().set_password(KEYRING_SERVICE, KEYRING_USER, token)
    except Exception as err:
        raise LoginError(f"cannot store the MAST token in the OS keyring ({keyring_backend_name()}: "
                         f"{type(err).__name__}); set {TOKEN_ENV} instead", cause=err) from None


def delete_stored_token():
    """Delete the token stored in the OS keyring; return False if none was stored.

    Raises
    ------
    LoginError
        When no usable keyring is available.
    """
    keyring = _keyring()
    try:
        if keyring.get_password(KEYRING_SERVICE, KEYRING_USER) is None:
            return False
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception as err:
        raise LoginError(f"cannot delete the MAST token from the OS keyring ({keyring_backend_name()}: "
                         f"{type(err).__name__})", cause=err) from None
    return True


def login(token=None, *, store=False, reenter=False, server=None):
    """Find (or ask for) a token, check it with ``{server}/whoami``, and optionally store it.

    As astroquery's ``login``: ``token``, else ``$MAST_API_TOKEN``, else the keyring; a hidden
    prompt only when none of them gives one (or ``reenter``) and a person is at the terminal.

    Parameters
    ----------
    token : str, optional
        The token to use.
    store : bool, optional
        Write the token to the OS keyring (after MAST accepted it).
    reenter : bool, optional
        Ask for a new token even if the environment or keyring holds one.
    server : str, optional
        The MAST server URL; default ``astroquery.mast.conf.server``.

    Returns
    -------
    token : str
        The accepted token.
    name : str
        Its owner's display name.

    Raises
    ------
    LoginError
        No token, a rejected one, an unreachable server, or (with ``store``) no usable keyring.
    """
    server = _default_server(server)
    if token is None and not reenter:
        token = resolve_token()
    if token is None or not token.strip():
        token = prompt_token()
    token = token.strip()
    mask_secret(token)
    name = check_token(token, server)
    if store:
        store_token(token)
    return token, name


def login_and_store(token_stdin=False, server=None):
    """``mastbulk login``: read a token (hidden prompt, or stdin), check it, store it in the keyring.

    Parameters
    ----------
    token_stdin : bool, optional
        Read the token from standard input instead of a hidden prompt.
    server : str, optional
        The MAST server URL that checks it; default ``astroquery.mast.conf.server``.

    Returns
    -------
    str
        The token owner's display name.

    Raises
    ------
    LoginError
        As `login`.
    """
    token = read_token(sys.stdin) if token_stdin else prompt_token()
    return login(token, store=True, server=server)[1]


def forget_token(delete_stored=False):
    """``logout``: with ``delete_stored``, delete the keyring's token; return True if one was deleted.

    A session's own token lives in its `MastMissionsClass` (``logout()`` there drops it); the
    command line keeps none between commands, so only the stored one can be forgotten.
    """
    return delete_stored_token() if delete_stored else False


def whoami(server=None, token=None):
    """Who ``{server}/whoami`` says the current token belongs to, as one line of text.

    Parameters
    ----------
    server : str, optional
        The MAST server URL; default ``astroquery.mast.conf.server``.
    token : str, optional
        An explicit token; default ``$MAST_API_TOKEN``, then the keyring.

    Returns
    -------
    str
    """
    server = _default_server(server)
    token, source = find_token(token)
    if token is None:
        return f"anonymous: no MAST token found; {_LOGIN_HINT}"
    info = session_info(server, token)
    if info.get("anon", True):
        return f"anonymous: the MAST token from {source} was rejected; make a new one at {TOKEN_URL}"
    return f"{_display_name(info)} (MAST token from {source})"
