#!/usr/bin/env python
"""Benchmark astroquery-mastbulk against the tools users would pick instead.

One run of this script generates the notifications (deterministic content, verifiable), starts the
package's own MAST test server (``python -m astroquery_mastbulk.testing``) as a separate process with
the scenario's first-byte latency, and runs, in rotating order and with a fresh server per run:

* ``mastbulk download`` (the console script; the whole process, start-up included, ``--server --quiet``),
* ``MastMissions.download_products`` (the Python call, timed inside Python, in a fresh process),
* astroquery's own per-file loop (``MastMissionsClass(mission='jwst').download_file`` per row),
* ``curl --parallel --parallel-max 8`` (a config file of url/output pairs),
* ``aria2c -j 8`` (an input file),
* the MAST-Portal-style bash script: one ``curl`` per file, one after the other.

Every file of every run is checked byte for byte (SHA-256 against
`astroquery_mastbulk.testing.file_sha256`). The table shows the median wall time of the repeats,
the requests and TCP connections the server saw, and the peak RSS of the largest process of the tool
(``os.wait4``'s ``ru_maxrss``). Only the standard library and ``astroquery_mastbulk.testing`` are
imported here; the Python tools run in their own processes (``--worker``).

Run ``python bench/bench.py --help``; ``--smoke`` is the seconds-long mode the test suite runs.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from astroquery_mastbulk.testing import file_sha256

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
WORKERS = 8  # every parallel tool gets this many connections
MISSION = "jwst"
SERVER_START_TIMEOUT = 30.0

TOOLS = ("mastbulk", "python", "astroquery", "curl-parallel", "aria2c", "curl-script", "python-floor")
TOOL_LABELS = {
    "mastbulk": "mastbulk download (CLI process)",
    "python": "MastMissions.download_products (in Python)",
    "astroquery": "astroquery 0.4.11 download_file loop (in Python)",
    "curl-parallel": f"curl --parallel --parallel-max {WORKERS}",
    "aria2c": f"aria2c -j {WORKERS}",
    "curl-script": "MAST-Portal-style curl script (sequential)",
    "python-floor": f"reference: bare stdlib Python client, {WORKERS} threads (python_floor.py)",
}
PACKAGE_TOOLS = ("mastbulk", "python")


@dataclass
class Scenario:
    """One benchmark situation: how many files of what size, and the server's latency."""

    key: str
    title: str
    files: int
    size: int
    latency: float
    tools: tuple = TOOLS
    rerun: bool = False  # time a re-run over a folder that is already complete


@dataclass
class Run:
    """The outcome of one timed run of one tool."""

    tool: str
    wall: float  # seconds: the tool's own measure (in Python for the Python tools, else the process)
    process: float  # seconds: the whole process, start to exit
    cpu: float
    peak_rss: int  # bytes, the largest single process of the tool
    requests: int
    connections: int
    verified: str
    exit_code: int
    extra: dict = field(default_factory=dict)
    to_first: float = None  # seconds from the process start to the server's first request
    after_last: float = None  # seconds from the server's last response to the process exit
    turnaround: float = None  # median seconds from an answer's end to the next request, per connection


def scenarios(smoke=False, big=False):
    """The scenarios by key; ``smoke`` shrinks them to a few tiny files."""
    if smoke:
        return {
            "A": Scenario("A", "6 x 64 KiB @ 0 ms (smoke)", 6, 64 * KIB, 0.0),
            "B": Scenario("B", "no-op re-run of A (smoke)", 6, 64 * KIB, 0.0, rerun=True,
                          tools=("mastbulk", "curl-script")),
            "D": Scenario("D", "2 x 1 MiB (smoke)", 2, MIB, 0.0, tools=("mastbulk", "curl-script")),
            "F": Scenario("F", "1 x 4 MiB: peak RSS (smoke)", 1, 4 * MIB, 0.0, tools=("mastbulk",)),
        }
    found = {
        "A": Scenario("A", "400 x 256 KiB @ 40 ms", 400, 256 * KIB, 0.04),
        "B": Scenario("B", "no-op re-run, 400 x 256 KiB @ 40 ms", 400, 256 * KIB, 0.04, rerun=True),
        "C": Scenario("C", "400 x 256 KiB @ 0 ms", 400, 256 * KIB, 0.0),
        "D": Scenario("D", "2 x 512 MiB @ 40 ms", 2, 512 * MIB, 0.04),
        "F": Scenario("F", "1 x 1 GiB: peak RSS", 1, GIB, 0.0, tools=PACKAGE_TOOLS),
    }
    if big:
        found["F4"] = Scenario("F4", "1 x 4 GiB: peak RSS (flat?)", 1, 4 * GIB, 0.0, tools=PACKAGE_TOOLS)
    return found


# -- data ------------------------------------------------------------------------------------------

def notification_rows(count, tag):
    """``count`` notification rows for JWST products whose names are unique to ``tag``."""
    rows = []
    for index in range(count):
        fileset = f"jw{9000 + index // 10:05d}001001_02201_{index % 10:05d}"
        rows.append({
            "event_id": f"bench-{tag}-{index:06d}", "mission": "JWST", "fileset": fileset,
            "filename": f"{fileset}_{tag.lower()}_nrca{index % 5}_cal.fits", "program": 9000 + index // 10,
            "event_type": ("New", "Public", "Reprocessed")[index % 3],
            "archived_date": "2026-03-30T17:53:19.695", "public_release_date": "2026-03-30T17:52:27.000",
        })
    return rows


def write_notification(rows, path):
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def product_path(folder, row):
    """Where every tool is told to put a row's file (astroquery's layout)."""
    return Path(folder) / "mastDownload" / MISSION / row["fileset"] / row["filename"]


def product_url(server, row):
    return f"{server}/search/{MISSION}/api/v0.1/retrieve_product?product_name={row['filename']}"


def verify(folder, rows, size):
    """``"ok"`` if every row's file holds exactly the server's bytes, else what is wrong."""
    bad = []
    for row in rows:
        path = product_path(folder, row)
        try:
            digest = _sha256(path)
        except OSError:
            bad.append(f"missing {path.name}")
            continue
        if digest != file_sha256(row["filename"], size):
            bad.append(f"wrong bytes in {path.name}")
    return "ok" if not bad else f"{len(bad)} bad: {bad[0]}"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(4 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# -- server ----------------------------------------------------------------------------------------

class BenchServer:
    """The package's MAST test server in its own process; its request summary is read on stop."""

    def __init__(self, workdir, latency, size, port=0):
        self.summary_path = Path(tempfile.mktemp(prefix="server-", suffix=".json", dir=workdir))
        command = [sys.executable, "-m", "astroquery_mastbulk.testing", "--port", str(port),
                   "--latency", str(latency), "--default-size", str(size),
                   "--log-summary", str(self.summary_path)]
        self._stderr = open(Path(workdir) / "server.stderr", "ab")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr,
                                        stdin=subprocess.DEVNULL)
        line = self.process.stdout.readline().decode()
        if "http://" not in line:
            self.process.kill()
            raise RuntimeError(f"the test server did not start: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]

    def stop(self):
        """Stop the server; return its summary (requests, connections, ...)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self._stderr.close()
        summary = json.loads(self.summary_path.read_text())
        self.summary_path.unlink()
        return summary


# -- running one tool ------------------------------------------------------------------------------

def spawn(command, log_path):
    """Run ``command``; return (exit code, whole-process seconds, cpu seconds, peak RSS bytes).

    The peak is that of the largest single process of the command (a script's largest curl), as
    GNU time reports it. Without ``/usr/bin/time`` it comes from ``os.wait4``, which cannot read
    below this script's own size: a vfork()ed child keeps its parent's high-water mark.
    """
    timer = shutil.which("time", path="/usr/bin")
    usage_file = Path(log_path).with_suffix(".rusage")
    if timer:
        command = [timer, "-f", "%M %U %S", "-o", str(usage_file)] + list(command)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(map(str, command))}\n".encode())
        log.flush()
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    peak, cpu = usage.ru_maxrss * KIB, usage.ru_utime + usage.ru_stime
    if timer:
        fields = usage_file.read_text().split()[-3:]  # after any "Command exited with" line
        peak, cpu = int(fields[0]) * KIB, float(fields[1]) + float(fields[2])
        usage_file.unlink()
    return process.returncode, elapsed, cpu, peak


#: The ``mastbulk`` command timed: set by main() (a regular install's, or this environment's).
MASTBULK = None


def _mastbulk_command():
    if MASTBULK is not None:
        return [MASTBULK]
    script = Path(sys.executable).with_name("mastbulk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "astroquery_mastbulk"]


def install_package(workdir):
    """The ``mastbulk`` command of a regular install of this source tree in a new venv in ``workdir``.

    Users get a regular install (``pip install astroquery-mastbulk``); developers usually have an
    editable one, whose import hook runs at every Python start (about 15 ms here: it imports
    pathlib and importlib.util). The wheel is built as pip builds any (its build backend comes from
    the package index) and installed without dependencies; the venv then sees this environment's
    packages (the dependencies) through a ``.pth`` file, written after the install so that pip
    never sees the other copy of the package.
    """
    venv, wheels = Path(workdir) / "installed", Path(workdir) / "wheel"
    repo = Path(__file__).resolve().parent.parent
    quiet = {"check": True, "stdout": subprocess.DEVNULL}
    leftover = not (repo / "build").exists()  # setuptools builds in the source tree: tidy up after it
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(wheels), str(repo)], **quiet)
    if leftover:
        shutil.rmtree(repo / "build", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    *map(str, wheels.glob("astroquery_mastbulk-*.whl"))], **quiet)
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = subprocess.run([str(python), "-c", ask], check=True, capture_output=True,
                                   text=True).stdout
    Path(site_packages.strip(), "bench-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return str(venv / "bin" / "mastbulk")


def tool_command(tool, ctx):
    """The command line of ``tool``, writing its inputs (config, input file, script) into ctx's folder."""
    rows, server, folder, notification = ctx["rows"], ctx["server"], ctx["folder"], ctx["notification"]
    if tool == "mastbulk":
        return _mastbulk_command() + ["download", str(notification), "--dir", str(folder),
                                      "--server", server, "--quiet"]
    if tool in ("python", "astroquery"):
        spec = {"server": server, "notification": str(notification), "folder": str(folder)}
        return [sys.executable, os.path.abspath(__file__), "--worker", tool, json.dumps(spec)]
    if tool == "curl-parallel":
        config = ctx["inputs"] / "curl-parallel.cfg"
        config.write_text("".join(f'url = "{product_url(server, row)}"\n'
                                  f'output = "{product_path(folder, row)}"\n' for row in rows))
        return ["curl", "--parallel", "--parallel-max", str(WORKERS), "--create-dirs", "--fail",
                "--no-progress-meter", "--config", str(config)]
    if tool == "aria2c":
        listing = ctx["inputs"] / "aria2c.txt"
        listing.write_text("".join(f"{product_url(server, row)}\n  dir={product_path(folder, row).parent}\n"
                                   f"  out={row['filename']}\n" for row in rows))
        return ["aria2c", "-j", str(WORKERS), "--max-connection-per-server=1", "--allow-overwrite=true",
                "--auto-file-renaming=false", "--console-log-level=warn", "--summary-interval=0",
                "--download-result=hide", "--quiet=true", "--input-file", str(listing)]
    if tool == "python-floor":
        listing = ctx["inputs"] / "python-floor.json"
        listing.write_text(json.dumps([[product_url(server, row), str(product_path(folder, row))]
                                       for row in rows]))
        floor_client = Path(__file__).with_name("python_floor.py")
        return [sys.executable, "-S", "-E", str(floor_client), str(listing), str(WORKERS)]
    if tool == "curl-script":
        script = ctx["inputs"] / "get.sh"
        lines = ["#!/bin/bash", "# one curl per file, as the MAST Portal's download script does"]
        for row in rows:
            lines.append(f"curl --globoff --location-trusted -f -sS --create-dirs "
                         f"--output '{product_path(folder, row)}' '{product_url(server, row)}'")
        script.write_text("\n".join(lines) + "\n")
        return ["bash", str(script)]
    raise ValueError(f"unknown tool {tool!r}")


def available(tool):
    """Whether ``tool`` can run here (curl and aria2c are Debian packages that may be missing)."""
    need = {"curl-parallel": "curl", "curl-script": "curl", "aria2c": "aria2c"}.get(tool)
    if need is None:
        return True
    return shutil.which(need) is not None


def free_port():
    """A loopback port free now: each scenario's servers all use one, so URLs stay the same across
    runs (a re-run must see the URLs the first run recorded)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_tool(tool, scenario, rows, workdir, folder, notification, port):
    """One timed run of ``tool`` with a fresh server; the files are verified afterwards."""
    inputs = workdir / "inputs"
    inputs.mkdir(exist_ok=True)
    log_path = workdir / f"{scenario.key}-{tool}.log"
    server = BenchServer(workdir, scenario.latency, scenario.size, port)
    try:
        ctx = {"rows": rows, "server": server.url, "folder": folder, "notification": notification,
               "inputs": inputs}
        command = tool_command(tool, ctx)
        _settle()
        started = time.monotonic()  # the server's clock: see summarize() in astroquery_mastbulk.testing
        code, elapsed, cpu, peak = spawn(command, log_path)
        ended = time.monotonic()
    finally:
        summary = server.stop()
    extra = _worker_report(log_path) if tool in ("python", "astroquery") else {}
    wall = extra.get("seconds", elapsed)
    run = Run(tool, wall, elapsed, cpu, peak, summary["requests"], summary["connections"],
              verify(folder, rows, scenario.size), code, extra)
    if summary.get("first_request_at") is not None:
        run.to_first = summary["first_request_at"] - started
        run.after_last = ended - summary["last_response_at"]
    run.turnaround = summary.get("median_turnaround")
    return run


def _settle():
    # Dirty pages of the previous run would be flushed during this one: write them out first.
    os.sync()


def _worker_report(log_path):
    """The last JSON line a ``--worker`` process printed (its own timings)."""
    for line in reversed(Path(log_path).read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


# -- the workers: Python tools in their own processes ----------------------------------------------

def _max_rss():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def worker_python(spec):
    """Time ``MastMissions.download_products`` on the notification, as a notebook would call it."""
    from astroquery.mast import conf

    from astroquery_mastbulk import MastMissions
    conf.server = spec["server"]
    before = _max_rss()
    start = time.perf_counter()
    table = MastMissions.download_products(spec["notification"], download_dir=spec["folder"], verbose=False)
    seconds = time.perf_counter() - start
    statuses = {str(s): int(sum(table["Status"] == s)) for s in set(table["Status"])}
    return {"seconds": seconds, "rss_before": before, "rss_after": _max_rss(), "statuses": statuses}


def worker_astroquery(spec):
    """Time astroquery 0.4.11's own way: ``download_file`` for each row of the notification.

    The server is set by patching the instance's ``_service_api_connection.MISSIONS_DOWNLOAD_URL``:
    astroquery reads ``conf.server`` into class attributes when ``astroquery.mast`` is imported.
    """
    from astroquery.mast import MastMissionsClass
    rows = json.loads(Path(spec["notification"]).read_text())
    missions = MastMissionsClass(mission=MISSION)
    missions._service_api_connection.MISSIONS_DOWNLOAD_URL = spec["server"] + "/search/"
    before = _max_rss()
    start = time.perf_counter()
    statuses = {}
    for row in rows:
        folder = product_path(spec["folder"], row).parent  # a folder: astroquery creates it
        status, _msg, _url = missions.download_file(row["filename"], local_path=str(folder), verbose=False)
        statuses[status] = statuses.get(status, 0) + 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before": before, "rss_after": _max_rss(), "statuses": statuses}


def worker_plan(spec):
    """Scenario E: read + validate + plan a big notification, and build its status table."""
    start = time.perf_counter()
    from astropy.table import Table

    from astroquery_mastbulk.jobs import plan_jobs, select_rows
    from astroquery_mastbulk.manifest import results_table
    from astroquery_mastbulk.runner import JobResult
    from astroquery_mastbulk.subscription import load_rows
    imports = time.perf_counter() - start

    start = time.perf_counter()
    rows = load_rows(spec["notification"])
    read = time.perf_counter() - start
    jobs = plan_jobs(select_rows(rows), server=spec["server"], download_dir=spec["folder"])
    read_plan = time.perf_counter() - start

    results = [JobResult(job, "COMPLETE", None, 2880, 2880) for job in jobs]
    appended = []
    originals = {name: getattr(Table, name) for name in ("add_row", "insert_row")}
    for name, original in originals.items():  # count per-row appends: there must be none
        setattr(Table, name, lambda self, *a, _o=original, **k: (appended.append(1), _o(self, *a, **k))[1])
    try:
        start = time.perf_counter()
        table = results_table(results)
        build = time.perf_counter() - start
    finally:
        for name, original in originals.items():
            setattr(Table, name, original)
    return {"seconds": read_plan, "read": read, "plan": read_plan - read, "table": build, "imports": imports,
            "rows": len(table), "row_appends": len(appended)}


WORKERS_BY_NAME = {"python": worker_python, "astroquery": worker_astroquery, "plan": worker_plan}


# -- scenarios -------------------------------------------------------------------------------------

def run_scenario(scenario, repeats, tools, workdir):
    """Every tool ``repeats`` times in rotating order; return {tool: [Run, ...]}."""
    rows = notification_rows(scenario.files, scenario.key)
    area = workdir / scenario.key
    area.mkdir()
    notification = write_notification(rows, area / f"event_metadata_bench_{scenario.key}.json")
    tools = [tool for tool in scenario.tools if tool in tools and available(tool)]
    folders = {tool: area / f"out-{tool}" for tool in tools}
    port = free_port()
    if scenario.rerun:
        _populate(scenario, rows, tools, area, folders, notification, port)
    runs = {tool: [] for tool in tools}
    for repeat in range(repeats):
        order = tools[repeat % len(tools):] + tools[:repeat % len(tools)]
        for tool in order:
            if not scenario.rerun:
                shutil.rmtree(folders[tool], ignore_errors=True)
            run = run_tool(tool, scenario, rows, area, folders[tool], notification, port)
            runs[tool].append(run)
            print(f"  {scenario.key} {tool:<14} {run.wall:8.3f} s  requests {run.requests:5d}  "
                  f"connections {run.connections:4d}  peak {run.peak_rss / MIB:7.1f} MiB  {run.verified}",
                  file=sys.stderr, flush=True)
    for tool in tools:
        shutil.rmtree(folders[tool], ignore_errors=True)
    return runs


def _populate(scenario, rows, tools, area, folders, notification, port):
    """Fill each tool's folder before a re-run: this package's tools by their own (untimed) run, so
    whatever they record beside the files is there; the others get a copy of those files."""
    reference = None
    for tool in tools:
        if tool in PACKAGE_TOOLS:
            run = run_tool(tool, scenario, rows, area, folders[tool], notification, port)
            if run.verified != "ok":
                raise RuntimeError(f"populating {tool}'s folder failed: {run.verified}")
            reference = reference or folders[tool]
    if reference is None:  # no package tool asked for: fill one with curl-like simplicity
        reference = area / "reference"
        run_tool("mastbulk", scenario, rows, area, reference, notification, port)
    for tool in tools:
        if tool not in PACKAGE_TOOLS:
            shutil.copytree(reference, folders[tool], ignore=shutil.ignore_patterns(".mastbulk"))


def run_plan_scenario(rows_count, repeats, workdir):
    """Scenario E in fresh processes: {"runs": [report, ...]}."""
    area = workdir / "E"
    area.mkdir()
    notification = write_notification(notification_rows(rows_count, "E"), area / "event_metadata_E.json")
    spec = json.dumps({"notification": str(notification), "server": "https://mast.stsci.edu",
                       "folder": str(area / "out")})
    reports = []
    for _ in range(repeats):
        log_path = area / "plan.log"
        command = [sys.executable, os.path.abspath(__file__), "--worker", "plan", spec]
        code, elapsed, _cpu, peak = spawn(command, log_path)
        report = _worker_report(log_path)
        if code != 0 or not report:
            raise RuntimeError(f"scenario E failed; see {log_path}")
        report.update(process=elapsed, peak_rss=peak)
        reports.append(report)
        print(f"  E read+validate+plan {report['seconds']:.3f} s, table {report['table']:.3f} s",
              file=sys.stderr, flush=True)
    return reports


# -- report ----------------------------------------------------------------------------------------

def _median(runs, attribute):
    return statistics.median(getattr(run, attribute) for run in runs)


def _ends(runs):
    """Median start-up (to the first request) and exit (after the last response) of runs that asked."""
    asked = [run for run in runs if run.to_first is not None]
    if not asked:
        return "–"
    return f"{_median(asked, 'to_first'):.3f} / {_median(asked, 'after_last'):.3f}"


def _turnaround(runs):
    """Median turnaround in ms of runs that reused a connection."""
    turned = [run for run in runs if run.turnaround is not None]
    return f"{_median(turned, 'turnaround') * 1e3:.2f}" if turned else "–"


def format_table(results, specs):
    """The Markdown table of every scenario and tool."""
    lines = ["| scenario | tool | wall s (median) | min–max | process s | to 1st request / after last s "
             "| turnaround ms | cpu s | requests | connections | peak RSS MiB | files |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, runs_by_tool in results.items():
        if key == "E":
            continue
        for tool, runs in runs_by_tool.items():
            walls = [run.wall for run in runs]
            verdicts = sorted({run.verified for run in runs} | {f"exit {run.exit_code}" for run in runs
                                                               if run.exit_code})
            lines.append(
                f"| {key}: {specs[key].title} | {TOOL_LABELS[tool]} | {statistics.median(walls):.2f} "
                f"| {min(walls):.2f}–{max(walls):.2f} | {_median(runs, 'process'):.2f} "
                f"| {_ends(runs)} | {_turnaround(runs)} | {_median(runs, 'cpu'):.2f} "
                f"| {_median(runs, 'requests'):.0f} | {_median(runs, 'connections'):.0f} "
                f"| {_median(runs, 'peak_rss') / MIB:.0f} | {', '.join(verdicts)} |")
    if "E" in results:
        reports = results["E"]
        med = {k: statistics.median(r[k] for r in reports)
               for k in ("seconds", "read", "plan", "table", "imports", "peak_rss")}
        lines.append(f"| E: {reports[0]['rows']}-row notification | read+validate+plan (in Python) "
                     f"| {med['seconds']:.3f} | read {med['read']:.3f}, plan {med['plan']:.3f} "
                     f"| imports {med['imports']:.2f} | | | | | | {med['peak_rss'] / MIB:.0f} "
                     f"| table {med['table']:.3f} s, {reports[0]['row_appends']} row appends |")
    return "\n".join(lines)


def ratios(results, specs):
    """Issue 8's targets (and issue 2's), as (name, value, target, met) computed from this run."""
    out = []

    def wall(key, tool, attribute="wall"):
        runs = results.get(key, {}).get(tool)
        return _median(runs, attribute) if runs else None

    def add(name, value, target, met):
        if value is not None:
            out.append((name, value, target, met(value)))

    a_cli, a_py, a_curl, a_aq = (wall("A", t) for t in ("mastbulk", "python", "curl-parallel", "astroquery"))
    floor = specs["A"].files * specs["A"].latency / WORKERS  # every file waits the latency once
    if a_cli and a_curl:
        add("A: curl --parallel / mastbulk process", a_curl / a_cli, ">= 1.0", lambda v: v >= 1.0)
    if a_py and floor:
        add(f"A: Python call / {floor:.1f} s floor", a_py / floor, "<= 1.1", lambda v: v <= 1.1)
    if a_aq and a_py:
        add("A (issue 2): astroquery loop / Python call", a_aq / a_py, ">= 6", lambda v: v >= 6)
    if a_aq and a_cli:
        add("A: astroquery loop / mastbulk process", a_aq / a_cli, "(info)", lambda v: True)
    for key in ("A", "C"):
        if wall(key, "mastbulk") is not None:
            add(f"{key}: mastbulk connections", wall(key, "mastbulk", "connections"), f"~{WORKERS}",
                lambda v: v <= WORKERS + 2)
    if wall("B", "mastbulk") is not None:
        add("B: mastbulk re-run HTTP requests", wall("B", "mastbulk", "requests"), "0", lambda v: v == 0)
        add("B: mastbulk re-run process s", wall("B", "mastbulk", "process"), "< 1", lambda v: v < 1)
    if wall("B", "python") is not None:
        add("B: Python call re-run HTTP requests", wall("B", "python", "requests"), "0", lambda v: v == 0)
    for key in ("A", "C"):  # what no Python process does better: the reference client against curl
        bare, curl = wall(key, "python-floor"), wall(key, "curl-parallel")
        if bare and curl:
            add(f"{key}: bare Python client / curl --parallel (reference)", bare / curl, "(info)",
                lambda v: True)
    c_cli, c_curl = wall("C", "mastbulk"), wall("C", "curl-parallel")
    if c_cli and c_curl:
        add("C: mastbulk process / curl --parallel", c_cli / c_curl, "<= 1.5", lambda v: v <= 1.5)
    d_cli, d_script = wall("D", "mastbulk"), wall("D", "curl-script")
    if d_cli and d_script:
        add("D: mastbulk process / sequential curl script", d_cli / d_script, "<= 1.1", lambda v: v <= 1.1)
    if d_cli:
        add("D: mastbulk peak RSS MiB", wall("D", "mastbulk", "peak_rss") / MIB, "< 100", lambda v: v < 100)
    for key in ("F", "F4"):
        if wall(key, "mastbulk") is not None:
            add(f"{key}: mastbulk peak RSS MiB", wall(key, "mastbulk", "peak_rss") / MIB, "< 100",
                lambda v: v < 100)
        runs = results.get(key, {}).get("python")
        if runs:
            growth = statistics.median(r.extra["rss_after"] - r.extra["rss_before"] for r in runs) / MIB
            add(f"{key}: Python call peak RSS growth MiB", growth, "< 100", lambda v: v < 100)
    if wall("F", "mastbulk") and wall("F4", "mastbulk"):
        add("F4 - F: mastbulk peak RSS difference MiB",
            (wall("F4", "mastbulk", "peak_rss") - wall("F", "mastbulk", "peak_rss")) / MIB, "~0 (flat)",
            lambda v: abs(v) < 10)
    if "E" in results:
        reports = results["E"]
        add("E: read+validate+plan s", statistics.median(r["seconds"] for r in reports), "< 1",
            lambda v: v < 1)
        add("E: status table row appends", reports[0]["row_appends"], "0", lambda v: v == 0)
    return out


def format_ratios(found):
    lines = ["| target | value | wanted | met |", "|---|---:|---|---|"]
    lines += [f"| {name} | {value:.2f} | {target} | {'yes' if met else 'NO'} |"
              for name, value, target, met in found]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="scenarios: A 400 x 256 KiB @ 40 ms; B no-op re-run of A; "
                                            "C 400 x 256 KiB @ 0 ms; D 2 x 512 MiB; "
                                            "E 10,000-row notification "
                                            "(read+validate+plan, status table); F 1 x 1 GiB peak RSS "
                                            "(--big adds 1 x 4 GiB)")
    parser.add_argument("--scenarios", default="A,B,C,D,E,F", help="comma-separated keys (default: all)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    parser.add_argument("--repeats", "-n", type=int, default=3, help="timed runs per tool (median shown)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of scenario E's notification")
    parser.add_argument("--big", action="store_true", help="also scenario F4: one 4 GiB file")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check that the script works: tiny files, one repeat")
    parser.add_argument("--workdir", help="where files go (default: a temporary folder, removed afterwards)")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures here")
    parser.add_argument("--editable", action="store_true",
                        help="time this environment's mastbulk command (an editable install, if a "
                             "developer's) instead of a regular install of the source tree")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    return parser


def compile_package():
    """Write the package's bytecode, as pip does when it installs a package.

    An editable install writes it at the first import, unless PYTHONDONTWRITEBYTECODE is set (it
    is on some machines): then every start would compile the package from source again (about
    40 ms here), a cost no installed copy pays.
    """
    import compileall

    import astroquery_mastbulk
    compileall.compile_dir(os.path.dirname(astroquery_mastbulk.__file__), quiet=1)


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.worker:
        kind, spec = args.worker
        print(json.dumps(WORKERS_BY_NAME[kind](json.loads(spec))), flush=True)
        return 0
    specs = scenarios(smoke=args.smoke, big=args.big)
    keys = [key.strip().upper() for key in args.scenarios.split(",") if key.strip()]
    if args.smoke:
        keys, args.repeats, args.rows = [k for k in keys if k in specs or k == "E"], 1, 300
        if args.big:
            keys.append("F4")
    elif args.big and "F4" not in keys:
        keys.append("F4")
    tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
    unknown = [key for key in keys if key not in specs and key != "E"] + [t for t in tools if t not in TOOLS]
    if unknown:
        _parser().error(f"unknown scenario or tool: {', '.join(unknown)}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mastbulk-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    compile_package()
    global MASTBULK
    results, load = {}, os.getloadavg()
    try:
        if "mastbulk" in tools and not args.editable:
            MASTBULK = install_package(workdir)
        for key in keys:
            print(f"scenario {key}", file=sys.stderr, flush=True)
            if key == "E":
                results["E"] = run_plan_scenario(args.rows, args.repeats, workdir)
            else:
                results[key] = run_scenario(specs[key], args.repeats, tools, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    found = ratios(results, specs)
    print(format_table(results, specs))
    print(f"\nload average (1 min) at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}; "
          f"{os.cpu_count()} CPUs")
    print()
    print(format_ratios(found))
    if args.json:
        dump = {key: ([dict(r) for r in value] if key == "E" else
                      {tool: [run.__dict__ for run in runs] for tool, runs in value.items()})
                for key, value in results.items()}
        dump["ratios"] = [{"name": n, "value": v, "target": t, "met": m} for n, v, t, m in found]
        Path(args.json).write_text(json.dumps(dump, indent=1))
    failed = [f"{key}/{tool}" for key, value in results.items() if key != "E"
              for tool, runs in value.items() for run in runs if run.verified != "ok"]
    if failed:
        print(f"bench: files not verified in {', '.join(sorted(set(failed)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
