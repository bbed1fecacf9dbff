"""On a real terminal (a tmux pane), ``mastbulk download`` draws one live bar that advances.

The server runs in this process, slowed by a per-request latency; the pane runs the installed
``mastbulk`` against it; ``tmux capture-pane`` reads the screen while the download runs.
"""

import json
import re
import shlex
import shutil
import subprocess
import time

import pytest

from test_cli import MASTBULK, jwst_row

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (Debian: apt-get install tmux; CI installs it)")

FILES = 24
# "mastbulk:  55%|█████▋    | 31.5M/57.2M [00:01<00:01, 21.6MB/s, 10/24 files]"
BAR = re.compile(r"mastbulk:\s+(\d+)%\|.*\|\s*([\d.]+\w?)/([\d.]+\w?) \[(\d\d:\d\d)<(\d\d:\d\d), "
                 r"\s*([\d.]+\s*\w?B/s), (\d+)/" + str(FILES) + r" files\]")


@pytest.fixture
def tmux(tmp_path):
    """A private tmux server (its own socket: the user's sessions are untouched), killed afterwards."""
    base = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    yield base
    subprocess.run(base + ["kill-server"], capture_output=True, timeout=30)


def capture(tmux):
    # -S -: from the start of the scrollback, where the bar line stays once the table is printed below it.
    return subprocess.run(tmux + ["capture-pane", "-p", "-S", "-", "-t", "bar"], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def test_terminal_download_shows_an_advancing_aggregate_bar(server, tmp_path, tmux):
    names = [f"jw0420{i:04d}001_02201_00001_nrca1_cal.fits" for i in range(FILES)]
    for name in names:
        server.set_file(name, size=2 * 1024 * 1024)
    notification = tmp_path / "many.json"
    notification.write_text(json.dumps([jwst_row(name) for name in names]))
    command = shlex.join(MASTBULK + ["download", str(notification), "--dir", "out",
                                     "--workers", "2", "--server", server.url])
    server.latency = 0.25  # two files at a time, each waiting 0.25 s: a few seconds in all
    try:
        subprocess.run(tmux + ["new-session", "-d", "-x", "200", "-y", "50", "-s", "bar", "-c", str(tmp_path),
                               f"{command}; echo EXIT=$?; sleep 120"], check=True, timeout=30)
        snapshots, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = capture(tmux)
            if "EXIT=" in screen:
                break
            found = BAR.search(screen)
            if found:
                snapshots.append(found)
            time.sleep(0.15)
    finally:
        server.latency = 0.0
    assert "EXIT=0" in screen, screen

    # Two captures taken mid-download, the later one further on in files, bytes and percentage.
    midway = [bar for bar in snapshots if int(bar.group(7)) < FILES]
    assert any(int(later.group(7)) > int(earlier.group(7)) and int(later.group(1)) > int(earlier.group(1))
               and later.group(2) != earlier.group(2)
               for i, earlier in enumerate(midway) for later in midway[i + 1:]), \
        [bar.group(0) for bar in snapshots]
    # The total is estimated for the whole run from the first sizes seen: 24 files of 2 MiB.
    assert any(bar.group(3) == "48.0M" for bar in midway), [bar.group(0) for bar in midway]
    final = BAR.search(screen)
    assert final and final.group(1) == "100" and final.group(7) == str(FILES), screen
    assert screen.count("COMPLETE") == FILES and f"{FILES} complete, 0 skipped, 0 error" in screen
