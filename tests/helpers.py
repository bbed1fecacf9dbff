"""Small helpers shared by tests: the bytes a served file should have, waiting for a condition."""

import time
from pathlib import Path

from astroquery_mastbulk.testing import file_bytes


def expected_bytes(server, name):
    """The bytes the server currently serves for ``name``."""
    spec = server.file_spec(name)
    return file_bytes(name, spec.size, version=spec.version)


def assert_file_matches(server, path, name=None):
    path = Path(path)
    assert path.is_file(), path
    assert path.read_bytes() == expected_bytes(server, name or path.name)


def leftovers(folder):
    """Temporary files left anywhere under ``folder``."""
    return sorted(str(p) for p in Path(folder).rglob("*.part"))


def most_at_once(records, since):
    """The most of these requests the server was answering at one time, counting only requests
    that started at or after ``since`` (`time.monotonic`): a request an earlier test left in
    flight may end, and be logged, after the server's reset."""
    records = [r for r in records if r.started >= since]
    edges = sorted([(r.started, 1) for r in records] + [(r.finished, -1) for r in records])
    level = peak = 0
    for _time, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def wait_for(condition, what, timeout=20.0):
    """Poll ``condition()`` until true; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
