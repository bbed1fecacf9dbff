"""``mastbulk login / logout / whoami`` as real subprocesses sharing the test's private keyring.

The autouse ``private_keyring`` fixture sets HOME, XDG_* and PYTHON_KEYRING_BACKEND in this
process's environment, which the subprocesses inherit: they and the test read the same file.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import time

import keyring
import pytest

from astroquery_mastbulk.auth import KEYRING_SERVICE, KEYRING_USER, TOKEN_URL

from conftest import OTHER_TOKEN, TOKEN

MASTBULK = [sys.executable, "-m", "astroquery_mastbulk"]


def mastbulk(*args, input=None, env=None, stdin=None):
    """Run ``mastbulk ARGS``; return (exit code, stdout, stderr)."""
    done = subprocess.run(MASTBULK + list(args), input=input, stdin=stdin, capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=60)
    return done.returncode, done.stdout, done.stderr


def stored():
    return keyring.get_password(KEYRING_SERVICE, KEYRING_USER)


def test_login_whoami_logout(server):
    code, out, err = mastbulk("login", "--token-stdin", "--server", server.url, input=TOKEN + "\n")
    assert code == 0, err
    assert "Logged in as Ada Lovelace" in err and "PlaintextKeyring" in err
    assert TOKEN not in out + err
    assert stored() == TOKEN
    seen = [(r.path, r.headers.get("authorization")) for r in server.requests()]
    assert seen == [("/whoami", f"token {TOKEN}")]

    code, out, err = mastbulk("whoami", "--server", server.url)
    assert (code, out.strip()) == (0, "Ada Lovelace (MAST token from keyring)")

    code, _, err = mastbulk("logout")
    assert code == 0 and "--forget" in err and stored() == TOKEN  # plain logout keeps the stored token
    code, _, err = mastbulk("logout", "--forget")
    assert code == 0 and "Deleted the MAST token" in err and stored() is None
    code, _, err = mastbulk("logout", "--forget")
    assert code == 0 and "No MAST token was stored" in err

    code, out, _ = mastbulk("whoami", "--server", server.url)
    assert code == 0 and out.startswith("anonymous: no MAST token found") and "mastbulk login" in out


def test_login_with_a_rejected_token_stores_nothing(server):
    code, out, err = mastbulk("login", "--token-stdin", "--server", server.url, input=OTHER_TOKEN + "\n")
    assert code == 1
    assert "the MAST token was rejected" in err and TOKEN_URL in err
    assert OTHER_TOKEN not in out + err
    assert stored() is None


def test_login_without_a_terminal_asks_for_token_stdin(server):
    code, _, err = mastbulk("login", "--server", server.url, stdin=subprocess.DEVNULL)
    assert code == 1 and "--token-stdin" in err
    assert server.requests() == []


def test_no_usable_keyring(server):
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    code, out, err = mastbulk("login", "--token-stdin", "--server", server.url, input=TOKEN + "\n", env=env)
    assert code == 1 and "set MAST_API_TOKEN instead" in err and TOKEN not in out + err
    code, out, _ = mastbulk("whoami", "--server", server.url, env=env)
    assert code == 0 and out.startswith("anonymous: no MAST token found")
    code, out, _ = mastbulk("whoami", "--server", server.url, env=dict(env, MAST_API_TOKEN=TOKEN))
    assert code == 0 and out.strip() == "Ada Lovelace (MAST token from MAST_API_TOKEN)"


def test_download_uses_the_stored_token_and_never_prints_it(server, tmp_path):
    keyring.set_password(KEYRING_SERVICE, KEYRING_USER, TOKEN)
    server.set_file("eap_cal.fits", eap=True)
    notification = tmp_path / "event.json"
    notification.write_text(json.dumps([
        {"mission": "JWST", "fileset": "jw01", "filename": name, "event_type": "New",
         "archived_date": "2026-01-01T00:00:00", "public_release_date": release}
        for name, release in (("eap_cal.fits", "2099-01-01T00:00:00"),
                              ("pub_cal.fits", "2020-01-01T00:00:00"))]))
    manifest = tmp_path / "manifest.ecsv"
    code, out, err = mastbulk("download", str(notification), "--server", server.url,
                              "--dir", str(tmp_path / "d"), "--manifest", str(manifest))
    assert code == 0, out + err
    seen = [r.headers.get("authorization") for r in server.requests(name="eap_cal.fits")]
    assert seen == [f"token {TOKEN}"]
    assert TOKEN not in out + err + manifest.read_text()


def _read_until(fd, needle, deadline):
    seen = b""
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_login_prompts_with_hidden_input_on_a_terminal(server):
    # The child makes the pseudo-terminal its controlling one (setsid + open), as a login shell
    # would, so getpass talks to /dev/tty with echo off, exactly as for a person.
    child = ("import os, sys; os.setsid(); os.close(os.open(os.ttyname(0), os.O_RDWR)); "
             "from astroquery_mastbulk.cli import main; main(sys.argv[1:])")
    try:
        master, slave = os.openpty()
    except (AttributeError, OSError) as err:
        pytest.skip(f"no pseudo-terminal here: {err}")
    process = subprocess.Popen([sys.executable, "-c", child, "login", "--server", server.url],
                               stdin=slave, stdout=slave, stderr=slave, env=dict(os.environ))
    os.close(slave)
    try:
        deadline = time.monotonic() + 30
        before = _read_until(master, b"(input hidden): ", deadline)
        assert b"(input hidden): " in before and TOKEN_URL.encode() in before
        os.write(master, TOKEN.encode() + b"\n")
        after = _read_until(master, b"\x00never", deadline)
        assert process.wait(timeout=30) == 0, after
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"Logged in as Ada Lovelace" in after
    assert TOKEN.encode() not in before + after  # not echoed, not printed
    assert stored() == TOKEN


_SECRET_SERVICE_SESSION = """
printf %s "$KEYRING_UNLOCK" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 90
"$PYTHON" -m astroquery_mastbulk login --token-stdin --server "$MAST_URL" || exit 91
"$PYTHON" -m astroquery_mastbulk whoami --server "$MAST_URL" || exit 92
"""


def test_secret_service_keyring(server, tmp_path):
    """The backend Linux desktops have: a real gnome-keyring daemon on a private D-Bus session."""
    missing = [p for p in ("dbus-run-session", "gnome-keyring-daemon") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install gnome-keyring dbus)")
    pytest.importorskip("secretstorage", reason="keyring's SecretService backend needs secretstorage")
    home, runtime = tmp_path / "gk-home", tmp_path / "gk-run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_RUNTIME_DIR=str(runtime),
               KEYRING_UNLOCK="test-login-password", PYTHON=sys.executable, MAST_URL=server.url,
               PYTHON_KEYRING_BACKEND="keyring.backends.SecretService.Keyring")
    done = subprocess.run(["dbus-run-session", "--", "sh", "-c", _SECRET_SERVICE_SESSION], input=TOKEN + "\n",
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Logged in as Ada Lovelace" in done.stderr and "SecretService" in done.stderr
    assert done.stdout.strip().endswith("Ada Lovelace (MAST token from keyring)")
    assert TOKEN not in done.stdout + done.stderr
    keyrings = list((home / "data" / "keyrings").glob("*.keyring"))
    assert keyrings and all(TOKEN.encode() not in path.read_bytes() for path in keyrings)  # stored encrypted
    assert stored() is None  # the test's own file keyring was never touched
