#!/usr/bin/env python
"""Local threads vs a Dask ``LocalCluster``: the same notification, the same server, the same cap.

Starts the package's MAST test server (``python -m astroquery_mastbulk.testing``) as a separate
process with a first-byte latency, writes a notification of ``--files`` products of ``--size``
bytes, and downloads it with ``MastMissions.download_products``:

* ``local``: ``executor=None``, the engine's own threads in this process;
* ``dask``: ``executor=client.get_executor()`` on a ``LocalCluster`` of ``--workers`` processes,
  with the cluster started beforehand (its start-up time is shown on its own line).

Every run uses ``max_workers`` connections (per host), starts from an empty folder, and is checked
byte for byte (SHA-256). The median of ``--repeat`` runs is shown.

    python bench/dask_bench.py --files 64 --size 8MiB --latency 0.05
"""

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astroquery_mastbulk.testing import file_sha256

MIB = 1 << 20


def _size(text):
    units = {"kib": 1 << 10, "mib": MIB, "gib": 1 << 30}
    for unit, factor in units.items():
        if text.lower().endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def start_server(size, latency):
    proc = subprocess.Popen([sys.executable, "-m", "astroquery_mastbulk.testing", "--port", "0",
                             "--default-size", str(size), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("MAST test server on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def write_notification(folder, count):
    rows = [{"event_id": str(i), "mission": "jwst", "fileset": f"jw05105{i // 8:03d}",
             "filename": f"jw05105{i // 8:03d}_{i:05d}_cal.fits", "program": 5105, "event_type": "New",
             "archived_date": "2026-04-22T14:35:23.123", "public_release_date": "2026-01-01T00:00:00"}
            for i in range(count)]
    path = Path(folder) / "event.json"
    path.write_text(json.dumps(rows))
    return path


def verify(manifest, size):
    for row in manifest:
        if row["Status"] != "COMPLETE":
            raise SystemExit(f"{row['filename']}: {row['Status']} {row['Message']}")
        digest = hashlib.sha256(Path(row["Local Path"]).read_bytes()).hexdigest()
        if digest != file_sha256(row["filename"], size):
            raise SystemExit(f"{row['filename']}: wrong bytes")


def timed_run(notification, folder, size, workers, executor):
    from astroquery_mastbulk import MastMissions
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    manifest = MastMissions.download_products(notification, download_dir=folder, max_workers=workers,
                                              verbose=False, executor=executor)
    elapsed = time.perf_counter() - start
    verify(manifest, size)
    return elapsed


def report(label, times, total_bytes):
    median = statistics.median(times)
    print(f"{label:<44} {median:8.2f} s {total_bytes / median / MIB:9.1f} MiB/s   "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--size", type=_size, default=8 * MIB, help="bytes per file (e.g. 8MiB)")
    parser.add_argument("--latency", type=float, default=0.05, help="server first-byte delay, seconds")
    parser.add_argument("--max-workers", type=int, default=8, help="connections per host")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per Dask worker")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from astroquery.mast import conf
    from distributed import Client, LocalCluster

    total = args.files * args.size
    print(f"{args.files} files x {args.size / MIB:.1f} MiB = {total / MIB:.0f} MiB, "
          f"latency {args.latency} s, max_workers {args.max_workers}")
    server, url = start_server(args.size, args.latency)
    scratch = Path(tempfile.mkdtemp(prefix="mastbulk-dask-bench-"))
    try:
        notification = write_notification(scratch, args.files)
        folder = scratch / "data"
        with conf.set_temp("server", url):
            local = [timed_run(notification, folder, args.size, args.max_workers, None)
                     for _ in range(args.repeat)]
            report("local threads (executor=None)", local, total)
            start = time.perf_counter()
            with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                print(f"{'LocalCluster start-up':<44} {time.perf_counter() - start:8.2f} s", flush=True)
                executor = client.get_executor()
                runs = [timed_run(notification, folder, args.size, args.max_workers, executor)
                        for _ in range(args.repeat)]
                report(f"LocalCluster {args.workers} processes x {args.threads} threads", runs, total)
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
