"""The least a Python process can do: a reference row for bench.py, not a downloader.

Standard library only, started with ``python -S -E`` (no site, no environment): a fixed number of
threads, one keep-alive ``http.client`` connection each, every file written to a dot-named
partial and renamed into place. No resume, retry, checksum, ledger, token, progress or table:
whatever separates ``mastbulk download`` from this row is the cost of those; whatever separates
this row from ``curl --parallel`` is the cost of being a Python process at all.

Usage: ``python -S -E python_floor.py LISTING.json WORKERS``, the listing a JSON list of
``[url, path]`` pairs.
"""

import http.client
import json
import os
import sys
import threading
from urllib.parse import urlsplit


def fetch_all(pairs, workers):
    todo = iter(pairs)
    lock = threading.Lock()
    failures = []

    def work():
        connections = {}
        while True:
            with lock:
                pair = next(todo, None)
            if pair is None:
                return
            try:
                fetch(connections, *pair)
            except Exception as err:  # noqa: BLE001 - a reference client: report and go on
                failures.append(f"{pair[0]}: {err!r}")

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def fetch(connections, url, path):
    parts = urlsplit(url)
    connection = connections.get(parts.netloc)
    if connection is None:
        connection = connections[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=60)
    connection.request("GET", f"{parts.path}?{parts.query}")
    response = connection.getresponse()
    if response.status != 200:
        response.read()
        raise OSError(f"HTTP {response.status}")
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    part = os.path.join(folder, f".{name}.part")
    with open(part, "wb") as out:
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            out.write(block)
    os.replace(part, path)


def main(argv):
    with open(argv[1], encoding="utf-8") as listing:
        pairs = json.load(listing)
    failures = fetch_all(pairs, int(argv[2]))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
