"""The ``mastbulk`` command, run as users run it: the installed executable in a subprocess, against
the local MAST server (``--server``), with the private keyring and HOME the autouse fixture set up."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.table import Table

from astroquery_mastbulk.cli import build_parser, parse_args
from astroquery_mastbulk.manifest import STATUS_COLUMNS
from astroquery_mastbulk.transfer import part_path

from conftest import TOKEN
from helpers import assert_file_matches, expected_bytes, leftovers, wait_for

_EXE = shutil.which("mastbulk", path=os.path.dirname(sys.executable))
MASTBULK = [_EXE] if _EXE else [sys.executable, "-m", "astroquery_mastbulk"]

SAMPLE_FILES = ["jw05893001001_02201_00001_mirimage_o001_crf.fits",
                "jw05105001001_02201_00001_mirimage_o001_crf.fits",
                "jw05105012002_02201_00001_mirimage_rateints.fits"]


def mastbulk(*args, cwd, env=None, timeout=60, stdin=None):
    """Run the command; return the CompletedProcess (text output)."""
    return subprocess.run(MASTBULK + [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=stdin)


def local_path(folder, name):
    return Path(folder) / "mastDownload" / "jwst" / name[:25] / name  # fileset: the first 25 characters


def write_notification(path, rows):
    Path(path).write_text(json.dumps(rows))
    return str(path)


def jwst_row(name, event_type="New", **extra):
    return {"event_id": f"id-{name}", "mission": "JWST", "fileset": name[:25], "filename": name,
            "program": 5105, "event_type": event_type, "archived_date": "2026-03-30T17:53:19.695",
            "public_release_date": "2026-03-30T17:52:27.000", **extra}


def assert_one_line_error(proc):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mastbulk: error: "), proc.stderr
    return lines[0]


# -- download: exit 0 ------------------------------------------------------------------------------

def test_download_completes_then_skips_with_plain_output(server, tmp_path, sample_path):
    first = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for name in SAMPLE_FILES:
        assert_file_matches(server, local_path(tmp_path / "out", name))
    assert first.stdout.count("COMPLETE") == 3
    progress = [line.split()[1] for line in first.stderr.splitlines() if line.startswith("[")]
    assert progress == ["COMPLETE"] * 3
    assert "3 complete, 0 skipped, 0 error" in first.stderr
    for output in (first.stdout, first.stderr):  # not a terminal: no bar, no cursor movement, no colour
        assert "\r" not in output and "\x1b" not in output

    server.reset()
    again = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("SKIPPED") == 3
    assert server.requests(method="GET") == []
    assert leftovers(tmp_path) == []


def test_module_entry_point_and_version(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "astroquery_mastbulk", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("mastbulk ")


# -- download: exit 1 ------------------------------------------------------------------------------

def test_a_failed_file_exits_1_and_the_others_complete(server, tmp_path, sample_path):
    server.missing.add(SAMPLE_FILES[1])
    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "ERROR" in proc.stdout and "404" in proc.stdout
    assert_file_matches(server, local_path(tmp_path / "out", SAMPLE_FILES[0]))
    assert_file_matches(server, local_path(tmp_path / "out", SAMPLE_FILES[2]))
    assert not local_path(tmp_path / "out", SAMPLE_FILES[1]).exists()
    assert "2 complete, 0 skipped, 1 error" in proc.stderr


def test_exclusive_access_file_needs_the_token_and_the_token_stays_secret(server, tmp_path, sample_path):
    server.set_file(SAMPLE_FILES[0], eap=True)
    anonymous = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, cwd=tmp_path)
    assert anonymous.returncode == 1
    assert "401" in anonymous.stdout and "mastbulk login" in anonymous.stdout

    server.reset()
    server.set_file(SAMPLE_FILES[0], eap=True)
    manifest = tmp_path / "run.ecsv"
    authorised = mastbulk("download", sample_path, "--dir", "out", "--server", server.url,
                          "--manifest", manifest, cwd=tmp_path, env={"MAST_API_TOKEN": TOKEN})
    assert authorised.returncode == 0, authorised.stdout
    gets = server.requests(name=SAMPLE_FILES[0], method="GET")
    assert gets[-1].status == 200 and gets[-1].headers["authorization"] == f"token {TOKEN}"
    for text in (authorised.stdout, authorised.stderr, manifest.read_text()):
        assert TOKEN not in text


def test_quiet_prints_only_errors(server, tmp_path, sample_path):
    calm = mastbulk("download", sample_path, "--dir", "a", "--server", server.url, "--quiet", cwd=tmp_path)
    assert (calm.returncode, calm.stdout, calm.stderr) == (0, "", "")

    server.reset()
    server.missing.add(SAMPLE_FILES[2])
    failing = mastbulk("download", sample_path, "--dir", "b", "--server", server.url, "--quiet", cwd=tmp_path)
    assert failing.returncode == 1 and failing.stdout == ""
    lines = failing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR ") and SAMPLE_FILES[2] in lines[0]


# -- download: exit 2 ------------------------------------------------------------------------------

def _bad_inputs(tmp_path, sample_path):
    (tmp_path / "garbled.json").write_text('[{"filename": "a.fits",')
    (tmp_path / "object.json").write_text('{"filename": "a.fits"}')
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    write_notification(tmp_path / "nameless.json", [{"fileset": "x", "mission": "JWST"}])
    (tmp_path / "folder.json").mkdir()
    return {
        "missing file": (["download", "nowhere.json"], "nowhere.json"),
        "a folder": (["download", "folder.json"], "folder.json"),
        "malformed JSON": (["download", "garbled.json"], "malformed JSON"),
        "not a list": (["download", "object.json"], "JSON list"),
        "no products": (["download", "empty.json"], "no products"),
        "not text": (["download", "binary.json"], "UTF-8"),
        "a row without filename": (["download", "nameless.json"], "row 1"),
        "--workers 0": (["download", sample_path, "--workers", "0"], "--workers"),
        "--workers x": (["download", sample_path, "--workers", "many"], "--workers"),
        "unknown option": (["download", sample_path, "--frobnicate"], "--frobnicate"),
        "no notification": (["download"], "NOTIFICATION.json"),
        "no command": ([], "COMMAND"),
        "unknown command": (["upload", sample_path], "upload"),
        "--manifest in a missing folder": (["download", sample_path, "--manifest", "no/such/dir/m.ecsv"],
                                           "does not exist"),
        "summary of malformed JSON": (["summary", "garbled.json"], "malformed JSON"),
    }


def test_bad_input_and_usage_exit_2_with_one_line(server, tmp_path, sample_path):
    children = {}
    for case, (args, hint) in _bad_inputs(tmp_path, sample_path).items():  # independent: run them at once
        extra = ["--server", server.url, "--dir", "out"] if args[:1] == ["download"] and len(args) > 1 else []
        children[case] = (hint, subprocess.Popen(MASTBULK + [str(arg) for arg in args + extra], cwd=tmp_path,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for case, (hint, child) in children.items():
        out, err = child.communicate(timeout=60)
        line = assert_one_line_error(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        assert hint in line, (case, line)
        assert out == "", case
    assert server.requests() == []
    assert not (tmp_path / "out").exists()


# -- options ---------------------------------------------------------------------------------------

def test_dry_run_writes_nothing_and_sends_nothing(server, tmp_path, sample_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, "--dry-run",
                    "--manifest", "run.ecsv", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(work) == []
    assert server.requests() == []
    planned = proc.stdout.strip().splitlines()
    assert len(planned) == 3
    assert all(line.startswith(server.url + "/search/jwst/api/v0.1/retrieve_product?product_name=")
               for line in planned)
    assert "nothing was fetched" in proc.stderr


def test_manifest_round_trips_as_ecsv_and_html(server, tmp_path, sample_path):
    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url,
                    "--manifest", "run.ecsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = Table.read(tmp_path / "run.ecsv", format="ascii.ecsv")
    assert table.colnames[:4] == list(STATUS_COLUMNS)
    assert list(table["Status"]) == ["COMPLETE"] * 3
    assert list(table["filename"]) == SAMPLE_FILES
    assert [Path(path) for path in table["Local Path"]] == [local_path("out", name) for name in SAMPLE_FILES]
    assert list(table["bytes"]) == [server.file_spec(name).size for name in SAMPLE_FILES]

    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url,
                    "--manifest", "run.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "run.html").read_text()
    assert "<table" in html and html.count("SKIPPED") == 3 and "Local Path" in html


def test_several_notifications_are_deduplicated(server, tmp_path, sample_path):
    extra_name = "jw05105099001_02201_00001_nrca1_cal.fits"
    second = write_notification(tmp_path / "second.json", [
        jwst_row(SAMPLE_FILES[1]), jwst_row(extra_name)])
    proc = mastbulk("download", sample_path, second, "--dir", "out", "--server", server.url,
                    "--manifest", "run.ecsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = Table.read(tmp_path / "run.ecsv")
    assert list(table["filename"]) == SAMPLE_FILES + [extra_name]
    for name in SAMPLE_FILES + [extra_name]:
        assert len(server.requests(name=name, method="GET")) == 1


def test_a_later_reprocessed_event_in_another_notification_wins(server, tmp_path):
    name = "jw05105088001_02201_00001_nrca1_cal.fits"
    first = write_notification(tmp_path / "first.json", [jwst_row(name, "New")])
    later = write_notification(tmp_path / "later.json", [
        jwst_row(name, "Reprocessed", archived_date="2026-06-01T00:00:00")])
    assert mastbulk("download", first, "--dir", "out", "--server", server.url, cwd=tmp_path).returncode == 0
    copy = local_path(tmp_path / "out", name)
    os.utime(copy, (1767225600, 1767225600))  # fetched on 2026-01-01, before the reprocessing
    server.bump_version(name)  # same size, new bytes

    proc = mastbulk("download", first, later, "--dir", "out", "--server", server.url,
                    "--manifest", "run.ecsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = Table.read(tmp_path / "run.ecsv")
    assert (list(table["event_type"]), list(table["Status"])) == (["Reprocessed"], ["COMPLETE"])
    assert_file_matches(server, copy)


def test_event_type_and_extension_select(server, tmp_path, sample_path):
    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, "--event-type",
                    "reprocessed", "--event-type", "Public", "--manifest", "types.ecsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(Table.read(tmp_path / "types.ecsv")["event_type"]) == ["Reprocessed", "Public"]

    proc = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, "--extension",
                    "_rateints.fits", "--manifest", "ext.ecsv", "--flat", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(Table.read(tmp_path / "ext.ecsv")["Local Path"]) == [os.path.join("out", SAMPLE_FILES[2])]

    server.reset()
    none = mastbulk("download", sample_path, "--dir", "out", "--server", server.url, "--event-type", "Public",
                    "--extension", ".jpg", cwd=tmp_path)
    assert none.returncode == 0 and "nothing to download" in none.stderr
    assert server.requests() == []


# -- Ctrl-C ----------------------------------------------------------------------------------------

def test_ctrl_c_exits_130_keeps_the_partial_file_and_the_next_run_resumes(server, tmp_path):
    name = "jw05105077001_02201_00001_nrcb1_cal.fits"
    size, cut_at = 3 * 1024 * 1024, 1_300_000
    server.set_file(name, size=size)
    # The first response breaks after cut_at bytes; the retry is told to come back in a minute:
    # the run is mid-file, with a partial on disk, when Ctrl-C arrives.
    server.add_fault(name, "cut", after=cut_at)
    server.add_fault(name, "429", retry_after=60)
    notification = write_notification(tmp_path / "one.json", [jwst_row(name)])
    final = tmp_path / "out" / "mastDownload" / "jwst" / name[:25] / name
    child = subprocess.Popen(MASTBULK + ["download", notification, "--dir", "out", "--server", server.url],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(r.status == 429 for r in server.requests(name=name)), "the throttled retry",
                 timeout=30.0)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not final.exists()
    kept = part_path(final).read_bytes()  # whole chunks received before the cut
    assert 0 < len(kept) <= cut_at and kept == expected_bytes(server, name)[:len(kept)]

    resumed = mastbulk("download", notification, "--dir", "out", "--server", server.url, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert server.requests(name=name, method="GET")[-1].range == f"bytes={len(kept)}-"
    assert_file_matches(server, final)
    assert leftovers(tmp_path) == []


# -- summary ---------------------------------------------------------------------------------------

def test_summary_explains_event_types(tmp_path, sample_path):
    proc = mastbulk("summary", sample_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{sample_path}: 3 products"
    by_type = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert "new to the archive" in by_type["New"]
    assert "calibration pipeline" in by_type["Reprocessed"]
    assert "exclusive access period" in by_type["Public"]
    assert by_type["5105"].split() == ["5105", "2"] and by_type["JWST"].split() == ["JWST", "3"]
    assert "exclusive access: none" in proc.stdout
    assert "archived: 2025-12-03 19:44:10 UTC to 2026-03-30 17:54:12 UTC" in proc.stdout


def test_summary_json_with_sizes_and_exclusive_access(tmp_path, sample_path):
    rows = [jwst_row("jw01_a_cal.fits", size=2880), jwst_row("jw01_b_cal.fits", size=5760),
            jwst_row("jw01_c_cal.fits", "Reprocessed", size=2880, public_release_date="2099-01-01T00:00:00")]
    notification = write_notification(tmp_path / "sized.json", rows)
    proc = mastbulk("summary", notification, sample_path, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["products"] == 6
    assert info["by_event_type"] == {"New": 3, "Reprocessed": 2, "Public": 1}
    assert info["bytes"] == 11520 and info["bytes_by_event_type"] == {"New": 8640, "Reprocessed": 2880}
    assert info["eap_files"] == ["jw01_c_cal.fits"]

    text = mastbulk("summary", notification, cwd=tmp_path)
    assert "(11.2kB)" in text.stdout.splitlines()[0]
    assert "exclusive access: 1 product" in text.stdout and "  jw01_c_cal.fits" in text.stdout.splitlines()

    mixed = mastbulk("summary", notification, sample_path, cwd=tmp_path)  # Public rows carry no size
    assert mixed.returncode == 0 and "Traceback" not in mixed.stderr, mixed.stderr
    public = next(line for line in mixed.stdout.splitlines() if line.split()[:1] == ["Public"])
    new = next(line for line in mixed.stdout.splitlines() if line.split()[:1] == ["New"])
    assert new.split()[1:3] == ["3", "8.44kB"]
    assert public.split()[1] == "1" and not public.split()[2].endswith("B")  # blank, not a size


# -- demo ------------------------------------------------------------------------------------------

def test_demo_downloads_the_bundled_notification(tmp_path):
    proc = mastbulk("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in SAMPLE_FILES:
        assert local_path(tmp_path / "mastbulk-demo", name).stat().st_size > 0
    assert proc.stdout.count("COMPLETE") == 3
    assert "What just happened" in proc.stdout and "mastbulk download" in proc.stdout
    assert leftovers(tmp_path) == []


# -- parsing, without I/O --------------------------------------------------------------------------

def test_parse_args_download_options():
    args = parse_args(["download", "a.json", "b.json", "--dir", "/data", "--workers", "4",
                       "--event-type", "New", "--event-type", "Public", "--extension", "_cal.fits",
                       "--flat", "--no-cache", "--dry-run", "--manifest", "m.html",
                       "--server", "http://127.0.0.1:9", "--quiet", "--mission", "jwst", "--verify"])
    assert args.command == "download" and args.notifications == ["a.json", "b.json"]
    assert (args.dir, args.workers, args.event_type, args.extension) == ("/data", 4, ["New", "Public"],
                                                                         ["_cal.fits"])
    assert args.flat and args.no_cache and args.dry_run and args.quiet and args.verify
    assert (args.manifest, args.server, args.mission) == ("m.html", "http://127.0.0.1:9", "jwst")

    defaults = parse_args(["download", "a.json"])
    assert (defaults.dir, defaults.workers, defaults.event_type, defaults.manifest) == (".", None, None, None)
    assert not (defaults.flat or defaults.no_cache or defaults.dry_run or defaults.quiet or defaults.verify)
    assert parse_args(["summary", "a.json", "--json"]).json
    assert parse_args(["demo"]).dir == "mastbulk-demo"


@pytest.mark.parametrize("argv", [["download", "a.json", "--workers", "0"], ["download"], ["nothing"],
                                  ["script", "a.json", "-o", "x.sh", "--parallel", "-1"]])
def test_parse_args_usage_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("mastbulk: error: ")


def test_every_command_help_shows_examples(capsys):
    commands = ["download", "script", "summary", "login", "logout", "whoami", "demo"]
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            parse_args([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"mastbulk {command}" in text, command


def test_notebook_gets_the_live_bar_not_lines(monkeypatch):
    import io
    import types
    from astroquery_mastbulk.progress import AggregateProgress, LineProgress, make_progress

    class ZMQInteractiveShell:  # the class name Jupyter kernels report
        pass

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    progress = make_progress(True, io.StringIO())
    assert isinstance(progress, AggregateProgress)
    progress.close()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert isinstance(make_progress(True, io.StringIO()), LineProgress)
    assert make_progress(False) is None


@pytest.mark.parametrize("argv", [["download", "a.json", "b.json", "--dir", "d", "--quiet", "--workers", "3"],
                                  ["script", "a.json", "-o", "x.sh"],
                                  ["summary", "--json", "a.json"], ["logout", "--forget"], ["demo"]])
def test_parsing_builds_only_the_command_given_and_reads_the_same(argv):
    # parse_args builds the one subcommand it was given (for speed): same result as the full parser.
    assert parse_args(argv) == build_parser().parse_args(argv)
    assert set(build_parser(argv[0])._subparsers._group_actions[0].choices) == {argv[0]}


def test_main_help_before_a_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["-h", "download"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(f"    {command}" in out for command in ("download", "script", "summary", "demo"))
