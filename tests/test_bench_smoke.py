"""The benchmark script in its seconds-long smoke mode, so it cannot rot, and issue 8's start-up promise.

``bench/bench.py --smoke`` runs every installed tool on a few tiny files against the bundled server
in its own process and checks every byte; nothing here asserts a duration.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench.py"


def test_bench_smoke_runs_every_installed_tool_and_verifies_every_file(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(BENCH), "--smoke", "--workdir", str(tmp_path / "work"),
                           "--json", str(report)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| scenario | tool |" in done.stdout and "| target | value |" in done.stdout
    figures = json.loads(report.read_text())

    expected = {"mastbulk", "python", "astroquery", "python-floor"}
    if shutil.which("curl"):
        expected |= {"curl-parallel", "curl-script"}
    if shutil.which("aria2c"):
        expected.add("aria2c")
    assert set(figures["A"]) == expected
    runs = [run for key in ("A", "B", "D", "F") for tool_runs in figures[key].values() for run in tool_runs]
    assert runs and all(run["verified"] == "ok" and run["exit_code"] == 0 for run in runs)
    # The server's own count: each of A's 6 files asked for once by every tool, on kept-alive connections.
    assert all(run["requests"] == 6 for tool_runs in figures["A"].values() for run in tool_runs)
    assert figures["A"]["mastbulk"][0]["connections"] <= 6
    # A re-run over a complete folder asks the server nothing (the download ledger).
    assert figures["B"]["mastbulk"][0]["requests"] == 0
    plan, = figures["E"]
    assert plan["rows"] == 300 and plan["row_appends"] == 0
    assert all(run["peak_rss"] > 0 for run in runs)


def _imported(stderr):
    """Top-level package names that ``python -X importtime`` reports as imported."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in stderr.splitlines() if line.startswith("import time:")}


def test_cli_download_path_imports_only_what_it_needs(server, tmp_path):
    rows = [{"mission": "JWST", "fileset": "jw09000001001_02201_00001", "event_type": "New",
             "filename": f"jw09000001001_02201_00001_nrca{i}_cal.fits",
             "public_release_date": "2020-01-01T00:00:00"} for i in range(2)]
    notification = tmp_path / "event.json"
    notification.write_text(json.dumps(rows))
    command = [sys.executable, "-X", "importtime", "-m", "astroquery_mastbulk", "download", str(notification),
               "--dir", str(tmp_path / "out"), "--server", server.url, "--quiet"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and again.returncode == 0, first.stderr[-2000:] + again.stderr[-2000:]
    assert len(server.requests(method="GET")) == 2 and len(server.requests()) == 2  # the re-run asked nothing
    for imported in (_imported(first.stderr), _imported(again.stderr)):
        assert "astroquery_mastbulk" in imported
        assert not imported & {"astropy", "astroquery", "numpy", "requests"}
    # Public files, then nothing to send: no token to find, so the keyring (slow to open) stays closed.
    assert "keyring" not in _imported(first.stderr) | _imported(again.stderr)
