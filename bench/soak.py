#!/usr/bin/env python
"""Soak run: thousands of products, a tenth of them with injected faults, every byte verified.

The package's MAST test server runs in this process, with faults queued file by file: 5xx
bursts, 429 with Retry-After, connections cut mid-body, short bodies, slow answers, and a cut
followed by a server that ignores the resuming Range. ``MastMissions.download_products`` runs in
a child process (``--worker``), so its peak RSS (``os.wait4``'s ``ru_maxrss``) is its own. Then
every file is checked by SHA-256 against the content the server serves, and the same notification
is downloaded again: the ledger should answer it all, with no request.

Not a test (it takes a minute or so): ``python bench/soak.py [--rows 5000] [--fault-rate 0.1]``.
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from astroquery_mastbulk.testing import MastServer, file_sha256

#: Fault recipes, used in turn: (kind, count, params) steps queued for one file.
RECIPES = [
    [("status", 2, {"status": 500})],
    [("status", 1, {"status": 503})],
    [("429", 1, {"retry_after": 0})],
    [("cut", 1, {})],
    [("short", 1, {})],
    [("slow", 1, {"delay": 0.2})],
    [("cut", 1, {}), ("ignore_range", 1, {})],
    [("status", 1, {"status": 502}), ("cut", 2, {})],
]


def make_rows(count):
    return [{"filename": f"jw{9000 + i // 50:05d}_{i:05d}_soak_cal.fits", "fileset": f"jw_soak_{i // 50:03d}",
             "mission": "jwst", "event_type": "New"} for i in range(count)]


def inject(server, rows, rate, seed):
    """Queue fault recipes on a random ``rate`` of the rows; return how many of each kind."""
    chosen = random.Random(seed).sample(range(len(rows)), int(round(rate * len(rows))))
    kinds = Counter()
    for n, index in enumerate(chosen):
        for kind, count, params in RECIPES[n % len(RECIPES)]:
            server.add_fault(rows[index]["filename"], kind, count=count, **params)
            kinds[kind] += count
    return len(chosen), kinds


def run_child(spec):
    """Run the worker; return its report and its peak RSS in bytes (Linux reports KiB)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--worker"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    child.stdin.write(json.dumps(spec))  # the rows are too many for a command line
    child.stdin.close()
    out = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"worker failed with exit code {child.returncode}")
    report = json.loads(out.splitlines()[-1])
    report["process"] = time.perf_counter() - start
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return report, peak


def verify(server, folder, rows):
    """Names of the files whose bytes differ from what the server serves (or that are missing)."""
    bad = []
    for row in rows:
        path = Path(folder, "mastDownload", "jwst", row["fileset"], row["filename"])
        spec = server.file_spec(row["filename"])
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = None
        if digest != file_sha256(row["filename"], spec.size, spec.version):
            bad.append(row["filename"])
    return bad


def worker(spec):
    """In the child: one download_products call; print statuses and the in-Python wall time."""
    from astroquery.mast import conf as mast_conf
    from astroquery_mastbulk import MastMissions, conf
    mast_conf.server = spec["server"]
    conf.backoff, conf.backoff_max = 0.05, 0.5
    start = time.perf_counter()
    table = MastMissions.download_products(spec["rows"], download_dir=spec["dir"],
                                           max_workers=spec["workers"],
                                           verbose=False)
    wall = time.perf_counter() - start
    errors = [f"{row['Local Path']}: {row['Message']}" for row in table if row["Status"] == "ERROR"]
    print(json.dumps({"wall": wall, "statuses": Counter(table["Status"]), "errors": errors[:5],
                      "bytes": int(table["bytes"].sum())}))


def leftovers(folder):
    return [str(p) for p in Path(folder, "mastDownload").rglob(".*")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--fault-rate", type=float, default=0.10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.load(sys.stdin))
    rows = make_rows(args.rows)
    with MastServer() as server, tempfile.TemporaryDirectory(prefix="mastbulk-soak-") as folder:
        faulty, kinds = inject(server, rows, args.fault_rate, args.seed)
        spec = {"server": server.url, "dir": folder, "rows": rows, "workers": args.workers}
        first, peak = run_child(spec)
        requests, left = len(server.requests()), sum(len(server.pending_faults(r["filename"])) for r in rows)
        bad = verify(server, folder, rows)
        mark = len(server.requests())
        second, peak_again = run_child(spec)
        print(f"rows: {args.rows}, files with faults: {faulty} ({dict(kinds)}), workers: {args.workers}")
        print(f"first run:  {dict(first['statuses'])}, {first['bytes'] / 2**20:.1f} MiB, "
              f"{requests} requests, faults left unused: {left}")
        print(f"            wall {first['wall']:.2f} s in Python ({first['process']:.2f} s as a process), "
              f"peak RSS {peak / 2**20:.1f} MiB")
        print(f"verified:   {args.rows - len(bad)}/{args.rows} files byte-exact; "
              f"hidden files left beside products: {len(leftovers(folder))}")
        print(f"re-run:     {dict(second['statuses'])}, {len(server.requests()) - mark} requests, "
              f"wall {second['wall']:.2f} s, peak RSS {peak_again / 2**20:.1f} MiB")
        for line in first["errors"]:
            print("  ERROR", line)
        return 1 if bad or first["errors"] or len(server.requests()) > mark else 0


if __name__ == "__main__":
    sys.exit(main())
