"""The documentation builds with warnings as errors, and every example in it runs.

* ``>>>`` examples, in the pages and in the docstrings the API page includes, run in Sphinx's
  doctest builder against the local server that ``docs/conf.py`` starts.
* ``.. code-block:: console`` examples run as shell commands, page by page in a fresh folder holding
  the sample notification (as ``JWST.json``, ``event.json`` and its long MAST name) and
  ``mast-token.txt``, against the ``server`` fixture made astroquery's server through
  ``astroquery.cfg``, exactly as a reader's configuration would. The output shown under a command
  must match its standard output (its standard error when it prints nothing else), with ``...``
  matching anything and this server's URL read as https://mast.stsci.edu. A command must exit 0
  unless the next one is ``echo $?``, which shows its status. A block preceded by a
  ``.. not-run: <reason>`` comment is not run (the interactive login prompt, a crontab line).
"""

import doctest
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
DOC_TOKEN, DOC_USER = "tok-example-5105", "A. Astronomer"
NOTIFICATION_NAMES = ("JWST.json", "event.json",
                      "event_metadata_jwst-program-5105_hourly_20260422_143523.json")
REAL_MAST = "https://mast.stsci.edu"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Both Sphinx builds, started at once (each takes seconds); ``builds[name]()`` waits for one."""
    out = tmp_path_factory.mktemp("docs")
    children = {builder: subprocess.Popen(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         "-d", str(out / f"doctrees-{builder}"), str(DOCS), str(out / builder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for builder in ("html", "doctest")}

    def finish(builder):
        child = children[builder]
        stdout, stderr = child.communicate(timeout=300)
        return child.returncode, stdout + stderr, out / builder
    yield finish
    for child in children.values():
        child.kill()
        child.communicate()


def test_html_builds_without_warnings(builds):
    status, output, html = builds("html")
    assert status == 0, output[-5000:]
    api = (html / "api.html").read_text()
    for name in ("download_products", "read_subscription", "EngineSettings", "MastServer", "MastBulkError"):
        assert name in api, name


def test_python_examples_run(builds):
    status, output, folder = builds("doctest")
    assert status == 0, output[-8000:]
    report = (folder / "output.txt").read_text()
    assert re.search(r"^\s+0 failures in tests$", report, re.M), report[-2000:]
    counts = dict(re.findall(r"^Document: (\S+)\n-+\n(?:.*\n)*?\s+(\d+) tests in default", report, re.M))
    for page in PAGES:
        if re.search(r"^\s*>>> ", page.read_text(), re.M):
            assert int(counts.get(page.stem, 0)) > 0, f"the examples of {page.name} did not run"


# -- console examples ------------------------------------------------------------------------------

def console_blocks(text):
    """The ``$`` commands of each console block, with the output shown under each."""
    lines, blocks = text.splitlines(), []
    for number, line in enumerate(lines):
        if line.strip() != ".. code-block:: console":
            continue
        before = [previous for previous in lines[:number] if previous.strip()]
        if before and before[-1].startswith(".. not-run:"):
            continue
        body = []
        for following in lines[number + 1:]:
            if following.strip() and not following.startswith("   "):
                break
            body.append(following[4:])
        commands = []
        for entry in body:
            if entry.startswith("$ "):
                commands.append([entry[2:], []])
            elif commands:
                commands[-1][1].append(entry)
        blocks.append([(command, "\n".join(shown).strip("\n")) for command, shown in commands])
    return blocks


def test_console_blocks_are_read_as_written():
    text = """Intro.

.. code-block:: console

    $ mastbulk summary event.json
    event.json: 3 products
    by event type
    $ mastbulk download missing.json
    $ echo $?
    2

.. not-run: a prompt.

.. code-block:: console

    $ mastbulk login

After.
"""
    assert console_blocks(text) == [[("mastbulk summary event.json", "event.json: 3 products\nby event type"),
                                     ("mastbulk download missing.json", ""), ("echo $?", "2")]]
    assert sum(len(console_blocks(page.read_text())) for page in PAGES) >= 8


@pytest.fixture
def shell_env(server):
    """The environment of the examples: astroquery's server is the local one, in astroquery.cfg."""
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    ask = [sys.executable, "-c", "from astropy.config import get_config_dir; print(get_config_dir())"]
    folder = Path(subprocess.run(ask, env=env, capture_output=True, text=True, check=True).stdout.strip())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "astroquery.cfg").write_text(f"[mast]\nserver = {server.url}\n")
    check = [sys.executable, "-c", "from astroquery.mast import conf; print(conf.server)"]
    configured = subprocess.run(check, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert configured == server.url  # never let an example reach the real MAST
    server.tokens[DOC_TOKEN] = DOC_USER
    return env


def run_page(page, folder, env, server):
    """Run one page's console blocks in ``folder``; return a list of failure descriptions."""
    folder.mkdir()
    for name in NOTIFICATION_NAMES:
        shutil.copyfile(DOCS.parent / "astroquery_mastbulk" / "data" / "JWST.json", folder / name)
    (folder / "mast-token.txt").write_text(DOC_TOKEN + "\n")
    env = {**env, "XDG_DATA_HOME": str(folder / ".data")}  # a keyring of its own: pages run at once
    checker, failures = doctest.OutputChecker(), []
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for block in console_blocks(page.read_text()):
        status = None
        for index, (command, shown) in enumerate(block):
            if command == "echo $?":
                got = f"{status}\n"
            else:
                proc = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True,
                                      text=True, timeout=120, stdin=subprocess.DEVNULL)
                status, got = proc.returncode, (proc.stdout or proc.stderr).replace(server.url, REAL_MAST)
                follows = block[index + 1][0] if index + 1 < len(block) else None
                if status != 0 and follows != "echo $?":
                    failures.append(f"{page.name}: `{command}` exited {status}:\n{proc.stdout}{proc.stderr}")
                    continue
            if shown and not checker.check_output(shown + "\n", got, flags):
                example = doctest.Example(command, shown + "\n")
                difference = checker.output_difference(example, got, flags)
                failures.append(f"{page.name}: `{command}`\n{difference}")
    return failures


def test_console_examples_run(server, shell_env, tmp_path):
    pages = [page for page in PAGES if console_blocks(page.read_text())]
    with ThreadPoolExecutor(max_workers=len(pages)) as pool:  # pages are independent: run them at once
        results = pool.map(lambda page: run_page(page, tmp_path / page.stem, shell_env, server), pages)
        failures = [failure for result in results for failure in result]
    assert not failures, "\n\n".join(failures)
    assert server.requests(method="GET"), "no example downloaded anything"
