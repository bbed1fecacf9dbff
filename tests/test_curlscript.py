"""The generated bash + curl script, run for real (bash, curl) against the local MAST server."""

import html.parser
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import termios
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from astroquery_mastbulk import MastMissions, load_rows
from astroquery_mastbulk.cli import parse_args, run
from astroquery_mastbulk.curlscript import render_script, shell_quote, write_script
from astroquery_mastbulk.jobs import plan_jobs
from astroquery_mastbulk.transfer import part_path

from conftest import TOKEN
from helpers import assert_file_matches, expected_bytes, leftovers

BASH, CURL, SHELLCHECK = shutil.which("bash"), shutil.which("curl"), shutil.which("shellcheck")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")
needs_curl = pytest.mark.skipif(BASH is None or CURL is None,
                                reason="bash and curl are needed to run the generated script")
FUTURE = (datetime.now(timezone.utc) + timedelta(days=365)).isoformat()
HOSTILE_LEGAL = ["a'b$(touch pwned)`.fits", "`touch pwned`.fits", '"; touch pwned; ".fits',
                 "x <&> $HOME y.fits", "-rf.fits"]
HOSTILE_REFUSED = ["n\n$(touch pwned).fits", "../$(touch pwned).fits", "sub/`touch pwned`.fits"]


def product(name, fileset="set1", **extra):
    return {"filename": name, "fileset": fileset, "mission": "jwst", "event_type": "New", **extra}


def make_script(server, tmp_path, products, *, parallel=1, download_dir="dl"):
    """Plan ``products`` for ``download_dir`` (relative to tmp_path) and write tmp_path/get.sh."""
    jobs = plan_jobs(load_rows(products), server=server.url, download_dir=download_dir)
    script = write_script(jobs, tmp_path / "get.sh", download_dir=download_dir, parallel=parallel)
    return Path(script), jobs


def run_script(script, *args, cwd, env=None, timeout=60, **kwargs):
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    environment = {**os.environ, **(env or {})}
    return subprocess.run([BASH, str(script), *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


class _ManifestParser(html.parser.HTMLParser):
    """Rows of MANIFEST.HTML's table as lists of cell texts (entities decoded), and its summary."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.summary, self._cell, self._in_summary = [], "", None, False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "p" and ("id", "summary") in attrs:
            self._in_summary = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "p":
            self._in_summary = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self._in_summary:
            self.summary += data


def read_manifest(folder):
    """``{local path: (status, detail)}`` and the summary line of ``folder``/MANIFEST.HTML."""
    parser = _ManifestParser()
    parser.feed((Path(folder) / "MANIFEST.HTML").read_text(encoding="utf-8"))
    header, *rows = parser.rows
    assert header == ["#", "File", "Status", "Detail"]
    return {path: (status, detail) for _n, path, status, detail in rows}, parser.summary


def local(job):
    """A job's path as the manifest names it (relative to the download folder)."""
    return "./" + Path(*job.path.parts[1:]).as_posix()


@needs_bash
@pytest.mark.parametrize("value", ["plain", "", "a b", "it's", "$(touch pwned)", "`touch pwned`", "a\nb",
                                   "'; touch pwned; '", "\"$HOME\"", "*", "~", "-n", "\\", "!x"])
def test_shell_quote_round_trips_through_bash(value, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = subprocess.run([BASH, "-c", f"printf %s {shell_quote(value)}"], cwd=workdir,
                         capture_output=True, text=True, check=True)
    assert out.stdout == value
    assert list(workdir.iterdir()) == []


@pytest.mark.skipif(SHELLCHECK is None or BASH is None, reason="bash and shellcheck are needed")
@pytest.mark.parametrize("parallel", [1, 4])
def test_script_passes_bash_n_and_shellcheck(server, tmp_path, parallel):
    products = [product(name) for name in HOSTILE_LEGAL + HOSTILE_REFUSED]
    products += [product("eap_cal.fits", public_release_date=FUTURE),
                 product("re_cal.fits", event_type="Reprocessed", archived_date="2026-01-02T03:04:05.6")]
    script, _jobs = make_script(server, tmp_path, products, parallel=parallel)
    subprocess.run([BASH, "-n", str(script)], check=True)
    checked = subprocess.run([SHELLCHECK, "--severity=style", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    assert os.access(script, os.X_OK)


@needs_curl
def test_token_from_argument(server, tmp_path):
    server.set_file("eap_cal.fits", size=2880 * 3, eap=True)
    script, jobs = make_script(server, tmp_path, [product("eap_cal.fits", public_release_date=FUTURE),
                                                  product("pub_cal.fits")])
    assert jobs[0].needs_token and not jobs[1].needs_token
    done = run_script(script, TOKEN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for job in jobs:
        assert_file_matches(server, tmp_path / job.path)
    assert [r.headers.get("authorization") for r in server.requests("eap_cal.fits")] == [f"token {TOKEN}"]
    assert TOKEN not in script.read_text() and TOKEN not in done.stderr + done.stdout
    assert leftovers(tmp_path) == []


@needs_curl
def test_token_from_environment(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    script, jobs = make_script(server, tmp_path, [product("eap_cal.fits", public_release_date=FUTURE)])
    done = run_script(script, cwd=tmp_path, env={"MAST_API_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, tmp_path / jobs[0].path)
    assert "token" not in done.stderr.lower()


@needs_curl
def test_token_from_piped_stdin_with_dash(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    script, jobs = make_script(server, tmp_path, [product("eap_cal.fits", public_release_date=FUTURE)])
    done = run_script(script, "-", cwd=tmp_path, input=TOKEN + "\n", stdin=None)
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, tmp_path / jobs[0].path)


@needs_curl
def test_hidden_prompt_on_a_terminal(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    script, jobs = make_script(server, tmp_path, [product("eap_cal.fits", public_release_date=FUTURE)])
    master, terminal = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "MAST_API_TOKEN"}
    proc = subprocess.Popen([BASH, str(script)], cwd=tmp_path, env=env, stdin=terminal,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        # Type only once `read -s` has turned echo off, as a person would after seeing the prompt.
        while termios.tcgetattr(terminal)[3] & termios.ECHO:
            assert proc.poll() is None and time.monotonic() < deadline, "the script never asked"
            time.sleep(0.02)
        os.write(master, (TOKEN + "\n").encode())
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.close(terminal)
    echoed = b""
    while select.select([master], [], [], 0)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        echoed += chunk
    os.close(master)
    assert proc.returncode == 0, err
    assert "input hidden" in err
    assert TOKEN.encode() not in echoed and TOKEN not in out + err
    assert_file_matches(server, tmp_path / jobs[0].path)


@needs_curl
def test_no_prompt_without_a_terminal_and_manifest_lists_failures(server, tmp_path):
    server.set_file("eap_cal.fits", eap=True)
    server.missing.add("gone_cal.fits")
    products = [product("pub_cal.fits"), product("eap_cal.fits", public_release_date=FUTURE),
                product("gone_cal.fits"), product("x <&> y.fits")]
    script, jobs = make_script(server, tmp_path, products)
    # stdin is a pipe held open that nobody writes to: a prompt reading it would hang until the timeout.
    reader, writer = os.pipe()
    try:
        done = run_script(script, cwd=tmp_path, stdin=reader, timeout=30)
    finally:
        os.close(reader)
        os.close(writer)
    assert done.returncode == 1
    assert "input hidden" not in done.stderr and "no terminal" in done.stderr
    manifest, summary = read_manifest(tmp_path / "dl")
    assert list(manifest) == [local(job) for job in jobs]
    assert manifest[local(jobs[0])] == ("retrieved", "HTTP 200")
    assert manifest[local(jobs[1])][0] == "failed" and "HTTP 401" in manifest[local(jobs[1])][1]
    assert manifest[local(jobs[2])] == ("failed", "curl exit 22, HTTP 404")
    assert manifest["./mastDownload/jwst/set1/x <&> y.fits"] == ("retrieved", "HTTP 200")
    assert summary == "4 requested, 2 retrieved, 0 already on disk, 2 failed"
    for job, there in zip(jobs, [True, False, False, True]):
        assert (tmp_path / job.path).is_file() is there
    assert leftovers(tmp_path) == []


@needs_curl
@pytest.mark.parametrize("case", ["prefix", "no_range_support", "complete_part"])
def test_rerun_resumes_partial_files(server, tmp_path, case):
    name, size = "big_cal.fits", 2880 * 100
    server.set_file(name, size=size)
    script, jobs = make_script(server, tmp_path, [product(name)])
    target = tmp_path / jobs[0].path
    target.parent.mkdir(parents=True)
    kept = {"prefix": 100000, "no_range_support": 100000, "complete_part": size}[case]
    part_path(target).write_bytes(expected_bytes(server, name)[:kept])
    server.ignore_range = case == "no_range_support"
    done = run_script(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, target)
    assert leftovers(tmp_path) == []
    gets = server.requests(name, method="GET")
    assert gets[0].range == f"bytes={kept}-"
    if case == "prefix":
        assert [r.bytes_sent for r in gets] == [size - kept]
    else:  # the partial file could not be continued: the script starts the file over, once
        assert [r.range for r in gets[1:]] == [None]
    again = run_script(script, cwd=tmp_path)
    assert again.returncode == 0
    assert len(server.requests(name, method="GET")) == len(gets)
    assert read_manifest(tmp_path / "dl")[0] == {local(jobs[0]): ("skipped", "already on disk")}


@needs_curl
def test_broken_connection_resumes_within_one_run(server, tmp_path):
    name = "cut_cal.fits"
    server.set_file(name, size=2880 * 50)
    server.add_fault(name, "cut", after=20000)
    script, jobs = make_script(server, tmp_path, [product(name)])
    done = run_script(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, tmp_path / jobs[0].path)
    ranges = [r.range for r in server.requests(name, method="GET")]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


@needs_curl
def test_server_errors_are_retried_by_curl(server, tmp_path):
    server.add_fault("busy_cal.fits", "status", status=503)
    script, jobs = make_script(server, tmp_path, [product("busy_cal.fits")])
    done = run_script(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, tmp_path / jobs[0].path)
    assert [r.status for r in server.requests("busy_cal.fits")] == [503, 200]
    assert read_manifest(tmp_path / "dl")[0][local(jobs[0])] == ("retrieved", "HTTP 200")


@needs_curl
def test_ctrl_c_stops_every_parallel_transfer(server, tmp_path):
    names = [f"s{i}_cal.fits" for i in range(5)]
    for name in names[:3]:
        server.add_fault(name, "slow", delay=3)
    script, _jobs = make_script(server, tmp_path, [product(name) for name in names], parallel=3)
    proc = subprocess.Popen([BASH, str(script)], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 10
    while server.max_concurrency() < 3 and time.monotonic() < deadline:  # all three are in flight
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    with pytest.raises(ProcessLookupError):  # no curl left behind, still writing partial files
        for _ in range(100):
            os.killpg(proc.pid, 0)
            time.sleep(0.05)
    statuses = [status for status, _ in read_manifest(tmp_path / "dl")[0].values()]
    assert statuses == ["not attempted"] * 5
    assert list((tmp_path / "dl" / "mastDownload" / "jwst" / "set1").glob("*.fits")) == []


@needs_curl
def test_redirect_to_another_host_gets_no_token(server, second_server, tmp_path):
    name = "moved_cal.fits"
    server.set_file(name, eap=True)
    server.add_fault(name, "redirect", to=second_server.url)
    script, jobs = make_script(server, tmp_path, [product(name, public_release_date=FUTURE)])
    done = run_script(script, TOKEN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_file_matches(second_server, tmp_path / jobs[0].path)
    assert server.requests(name)[0].headers.get("authorization") == f"token {TOKEN}"
    assert [r.headers.get("authorization") for r in second_server.requests(name)] == [None]


@needs_curl
def test_reprocessed_file_older_than_its_archive_date_is_replaced(server, tmp_path):
    products = [product("re_cal.fits", event_type="Reprocessed", archived_date="2026-01-02T03:04:05"),
                product("new_cal.fits")]
    script, jobs = make_script(server, tmp_path, products)
    for job in jobs:
        (tmp_path / job.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / job.path).write_bytes(b"old copy")
        os.utime(tmp_path / job.path, (946684800, 946684800))  # 2000-01-01
    done = run_script(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_file_matches(server, tmp_path / jobs[0].path)
    assert (tmp_path / jobs[1].path).read_bytes() == b"old copy"
    assert server.requests("new_cal.fits") == []


@needs_curl
def test_parallel_transfers_overlap(server, tmp_path):
    names = [f"p{i}_cal.fits" for i in range(6)]
    script, jobs = make_script(server, tmp_path, [product(name) for name in names], parallel=3)
    server.latency = 0.3
    try:
        done = run_script(script, cwd=tmp_path)
    finally:
        server.latency = 0.0
    assert done.returncode == 0, done.stderr
    for job in jobs:
        assert_file_matches(server, tmp_path / job.path)
    assert server.max_concurrency() >= 2
    assert [status for status, _ in read_manifest(tmp_path / "dl")[0].values()] == ["retrieved"] * 6


@needs_curl
def test_curl_flag_writes_a_script_python_can_finish(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    products = [product(f"c{i}_cal.fits", fileset=f"set{i % 2}") for i in range(3)]
    table = MastMissions.download_products(products, download_dir="out", curl_flag=True, verbose=False)
    assert table.colnames[:3] == ["Local Path", "Status", "Message"] and len(table) == 1
    assert list(table["Status"]) == ["COMPLETE"]
    script = table["Local Path"][0]
    assert re.fullmatch(r"out/mastDownload_\d{14}(_\d+)?\.sh", script)
    assert server.requests() == []  # writing the script fetches nothing
    done = run_script(script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = MastMissions.download_products(products, download_dir="out", verbose=False)
    assert list(manifest["Status"]) == ["SKIPPED"] * 3  # the same paths the Python download uses
    for path in manifest["Local Path"]:
        assert_file_matches(server, path)


@needs_curl
def test_hostile_notification_runs_no_code(server, tmp_path):
    products = [product(name) for name in HOSTILE_LEGAL + HOSTILE_REFUSED]
    products.append(product("in_odd_set.fits", fileset="$(touch pwned)"))
    notification = tmp_path / "event.json"
    notification.write_text(json.dumps(products))
    script = tmp_path / "get.sh"
    code = run(parse_args(["script", str(notification), "-o", str(script), "--dir", "dl",
                           "--server", server.url]))
    assert code == 0
    text = script.read_text()
    assert "3 requested row(s) were left out" in text
    assert not any(name in text for name in HOSTILE_REFUSED)
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = run_script(script, cwd=workdir, env={"HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert not any(path.name == "pwned" for path in tmp_path.rglob("*"))
    got = workdir / "dl" / "mastDownload" / "jwst"
    for name in HOSTILE_LEGAL:
        assert_file_matches(server, got / "set1" / name)
    assert_file_matches(server, got / "$(touch pwned)" / "in_odd_set.fits")
    manifest, _summary = read_manifest(workdir / "dl")
    assert sorted(manifest) == sorted(["./mastDownload/jwst/set1/" + name for name in HOSTILE_LEGAL]
                                      + ["./mastDownload/jwst/$(touch pwned)/in_odd_set.fits"])


def test_bad_parallel_is_an_input_error(server):
    jobs = plan_jobs(load_rows([product("a_cal.fits")]), server=server.url)
    with pytest.raises(ValueError, match="parallel"):
        render_script(jobs, parallel=0)
