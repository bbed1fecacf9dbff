"""Ctrl-C while the server is silent: the run stops at once, not when a read times out.

The server holds each answer back for longer than the test waits (a "slow" fault, before the
headers or mid-body), so a worker sits in a blocking read when SIGINT arrives; only cutting its
connection gets it out in time. A reset of the server then forgets those requests, which are
still in flight.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

from astroquery_mastbulk import MastMissions
from astroquery_mastbulk.transfer import part_path

from helpers import assert_file_matches, expected_bytes, leftovers, wait_for

_EXE = shutil.which("mastbulk", path=os.path.dirname(sys.executable))
MASTBULK = [_EXE] if _EXE else [sys.executable, "-m", "astroquery_mastbulk"]
SILENCE = 30.0  # seconds the server keeps quiet: well past the time the child is given to exit
GRACE = 10.0  # seconds a child has to exit after SIGINT (its read timeout is 60 s)
NAMES = [f"jw0123400100{i}_02101_00001_nrca1_cal.fits" for i in range(2)]

PYTHON_SCRIPT = textwrap.dedent("""
    import sys
    from astroquery.mast import conf
    from astroquery_mastbulk import MastMissions
    conf.server = sys.argv[1]
    rows = [{"filename": name, "fileset": name[:25], "mission": "jwst"} for name in sys.argv[3:]]
    try:
        MastMissions.download_products(rows, download_dir=sys.argv[2], verbose=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


def _interrupt_when(ready, command, **popen):
    """Run ``command``; SIGINT once ``ready()`` (its workers are then in a read); return its exit
    status, output and error output."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen) as child:
        try:
            wait_for(ready, "the workers to be waiting on the server")
            time.sleep(0.2)  # what the server sent is read: the workers now wait for more
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=GRACE)
        except BaseException:
            child.kill()
            raise
    return child.returncode, out, err


def _python_run(server, folder):
    return [sys.executable, "-c", PYTHON_SCRIPT, server.url, str(folder), *NAMES]


def _every_file_requested(server):
    return lambda: server.max_concurrency() >= len(NAMES)


def test_python_ctrl_c_while_the_server_is_silent(server, tmp_path):
    for name in NAMES:
        server.add_fault(name, "slow", delay=SILENCE)
    status, out, err = _interrupt_when(_every_file_requested(server), _python_run(server, tmp_path))
    assert status == 130 and out.strip() == "interrupted", err
    assert "Traceback" not in err and err.strip() == "", err
    assert not list(tmp_path.rglob("*.fits"))  # the partials are named .<name>.part
    assert len(leftovers(tmp_path)) == len(NAMES)  # kept (empty) for the next run to resume


def test_cli_ctrl_c_while_the_server_is_silent(server, tmp_path):
    for name in NAMES:
        server.add_fault(name, "slow", delay=SILENCE)
    notification = tmp_path / "rows.json"
    notification.write_text(json.dumps([{"mission": "JWST", "fileset": name[:25], "filename": name}
                                        for name in NAMES]))
    command = MASTBULK + ["download", str(notification), "--dir", "out", "--server", server.url]
    status, _out, err = _interrupt_when(_every_file_requested(server), command, cwd=tmp_path)
    assert status == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "mastDownload" / "jwst" / NAMES[0][:25] / NAMES[0]).exists()


def test_python_ctrl_c_while_a_body_stalls_keeps_what_arrived(server, tmp_path):
    size, stall_at, chunk = 4 << 20, (5 << 20) // 2, 1 << 20  # the engine writes whole 1 MiB chunks
    for name in NAMES:
        server.set_file(name, size=size)
        server.add_fault(name, "slow", after=stall_at, delay=SILENCE)
    partials = [part_path(tmp_path / "mastDownload" / "jwst" / name[:25] / name) for name in NAMES]

    def stalled():
        return all(path.exists() and path.stat().st_size == 2 * chunk for path in partials)

    status, out, err = _interrupt_when(stalled, _python_run(server, tmp_path))
    assert status == 130 and out.strip() == "interrupted", err
    assert "Traceback" not in err
    for name, path in zip(NAMES, partials):
        assert path.read_bytes() == expected_bytes(server, name)[:2 * chunk]

    rows = [{"filename": name, "fileset": name[:25], "mission": "jwst"} for name in NAMES]
    again = MastMissions.download_products(rows, download_dir=tmp_path, verbose=False)
    assert list(again["Status"]) == ["COMPLETE"] * len(NAMES)
    for name, path in zip(NAMES, partials):
        assert server.requests(name=name, method="GET")[-1].range == f"bytes={2 * chunk}-"
        assert_file_matches(server, path.with_name(name))
    assert leftovers(tmp_path) == []


def test_reset_forgets_requests_in_flight(server):
    """A request begun before a reset (a test's abandoned slow answer) is not logged after it,
    nor counted as in flight; its slow fault ends at the reset instead of holding a thread."""
    name = NAMES[0]
    server.add_fault(name, "slow", delay=SILENCE)
    with socket.create_connection(("127.0.0.1", server.port), timeout=GRACE) as sock:
        sock.sendall(f"GET /api/v0.1/Download/file?uri=mast:JWST/product/{name} HTTP/1.1\r\n"
                     "Host: x\r\nConnection: close\r\n\r\n".encode())
        wait_for(lambda: server.max_concurrency() == 1, "the request to reach the server")
        server.reset()
        assert server.max_concurrency() == 0
        answer = b""
        while chunk := sock.recv(1 << 16):  # the whole answer: the handler is done with it
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert server.requests() == [] and server.max_concurrency() == 0
