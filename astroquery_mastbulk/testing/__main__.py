"""Run the MAST test server from the shell.

``python -m astroquery_mastbulk.testing --port 0 --latency 0.04``
prints ``MAST test server on http://127.0.0.1:PORT`` and serves until
SIGTERM or SIGINT.
"""

import argparse
import collections
import json
import signal
import statistics
import sys

from .server import MastServer


def _token(text):
    token, sep, name = text.partition("=")
    if not sep or not token:
        raise argparse.ArgumentTypeError("expected TOKEN=NAME")
    return token, name


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m astroquery_mastbulk.testing",
        description="Serve deterministic MAST products on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds of first-byte delay for each file request")
    parser.add_argument("--default-size", type=int, default=None, metavar="BYTES",
                        help="size of every file (default: derived from its name)")
    parser.add_argument("--token", type=_token, action="append", default=[],
                        metavar="TOKEN=NAME", help="a valid token and its display name")
    parser.add_argument("--checksums", action="store_true",
                        help="send X-Checksum-Sha256 with every file")
    parser.add_argument("--log-summary", metavar="PATH",
                        help="write a JSON summary of the requests here on exit")
    return parser


def summarize(server):
    """Summarize a server's request log as a JSON-able dict.

    Parameters
    ----------
    server : MastServer
        The server whose log to summarize.

    Returns
    -------
    dict
        Totals by method and status, distinct connections, Range requests,
        GETs per file name, the peak number of concurrent file requests, when the first
        request arrived and the last response ended (``time.monotonic()`` seconds), and the
        median turnaround: seconds from the server ending an answer to the next request on the
        same connection (None without a second request on any connection).
    """
    records = server.requests()
    gets = collections.Counter(r.name for r in records if r.method == "GET" and r.name)
    return {
        "requests": len(records),
        "by_method": dict(collections.Counter(r.method for r in records)),
        "by_status": {str(k): v for k, v in collections.Counter(r.status for r in records).items()},
        "connections": len({r.connection for r in records}),
        "range_requests": sum(1 for r in records if r.range),
        "bytes_sent": sum(r.bytes_sent for r in records),
        "max_concurrency": server.max_concurrency(),
        "gets_by_name": dict(gets),
        # On this host's monotonic clock (time.monotonic), which other processes share: a client
        # timed with it can tell its start-up and its exit from its transfers.
        "first_request_at": min((r.started for r in records), default=None),
        "last_response_at": max((r.finished for r in records), default=None),
        "median_turnaround": _median_turnaround(records),
    }


def _median_turnaround(records):
    # The client's share of a keep-alive connection's time: with a first-byte latency, the
    # server's own share is the same for every client, so this tells clients apart.
    by_connection = collections.defaultdict(list)
    for record in records:
        by_connection[record.connection].append(record)
    turns = []
    for answered in by_connection.values():
        answered.sort(key=lambda record: record.started)
        turns += [after.started - before.finished for before, after in zip(answered, answered[1:])]
    return statistics.median(turns) if turns else None


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    # Wait for SIGTERM/SIGINT with sigwait, not a handler: a handler calling Event.set() can run
    # while the main thread holds that Event's own lock inside wait(), and deadlock (seen in bench).
    # Blocked before the server starts, so its threads inherit the mask and never take the signal.
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    server = MastServer(args.host, args.port, latency=args.latency,
                        default_size=args.default_size, tokens=dict(args.token),
                        send_checksums=args.checksums)
    with server:
        print(f"MAST test server on {server.url}", flush=True)
        signal.sigwait(signals)
    if args.log_summary:
        with open(args.log_summary, "w", encoding="utf-8") as fh:
            json.dump(summarize(server), fh, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
