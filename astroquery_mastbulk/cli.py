"""The ``mastbulk`` command: download, script, summary, login, logout, whoami, demo.

Exit codes: 0 every file COMPLETE or SKIPPED; 1 some file ERROR; 2 bad input or usage; 130 Ctrl-C.
Only what a subcommand needs is imported, so a download starts in a fraction of a second.
"""

import argparse
import sys

from .errors import InputError, MastBulkError

__all__ = ["main", "parse_args", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_DOWNLOAD_EXAMPLES = """examples:
  mastbulk download event_metadata_jwst-program-5105_hourly_20260422_143523.json
  mastbulk download *.json --dir /data/jwst --workers 16 --manifest /data/jwst/last-run.ecsv
  mastbulk download event.json --event-type Reprocessed --extension _cal.fits --dry-run

exit status: 0 every file COMPLETE or SKIPPED, 1 some file ERROR, 2 bad input or usage,
130 interrupted (partial files are kept; run the same command again to resume them)
"""
_SCRIPT_EXAMPLES = """examples:
  mastbulk script event.json -o get.sh && bash get.sh
  MAST_API_TOKEN=... bash get.sh          # or: bash get.sh "$TOKEN"
"""
_SUMMARY_EXAMPLES = """examples:
  mastbulk summary event.json
  mastbulk summary *.json --json | jq .by_event_type
"""
_AUTH_EXAMPLES = """examples:
  mastbulk login                          # hidden prompt; stored in the OS keyring
  pass show mast | mastbulk login --token-stdin
  mastbulk whoami
  mastbulk logout --forget                # also delete the stored token
"""
_DEMO_EXAMPLES = """examples:
  mastbulk demo
  mastbulk demo --dir /tmp/try-mastbulk
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line on stderr and exit 2, as argparse does, but without the usage block.
        self.exit(EXIT_USAGE, f"mastbulk: error: {message}\n")


def _selection_options(parser):
    parser.add_argument("notifications", nargs="+", metavar="NOTIFICATION.json",
                        help="MAST subscription notification file(s)")
    parser.add_argument("--dir", default=".", help="download folder (default: the current folder)")
    parser.add_argument("--event-type", action="append", metavar="TYPE",
                        help="only this event type (New, Reprocessed or Public); repeatable")
    parser.add_argument("--extension", action="append", metavar="END",
                        help="only file names ending with END (e.g. _cal.fits); repeatable")
    parser.add_argument("--flat", action="store_true", help="put files directly into --dir")
    parser.add_argument("--server", help="MAST server URL (default: astroquery.mast.conf.server)")
    parser.add_argument("--mission", default="hst", help="mission of rows that name none (default: hst)")


def _add(sub, name, help_text, examples):
    return sub.add_parser(name, help=help_text, description=help_text, epilog=examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _download_options(download):
    _selection_options(download)
    download.add_argument("--workers", type=int, help="files transferred at once (default 8)")
    download.add_argument("--no-cache", action="store_true", help="download again files already on disk")
    download.add_argument("--verify", action="store_true",
                          help="check FITS CHECKSUM/DATASUM keywords before keeping each file")
    download.add_argument("--dry-run", action="store_true",
                          help="show what would be downloaded; fetch nothing")
    download.add_argument("--manifest", metavar="PATH",
                          help="write the status table (ECSV, or HTML by suffix)")
    download.add_argument("--quiet", action="store_true", help="print errors only")


def _script_options(script):
    _selection_options(script)
    script.add_argument("-o", "--output", required=True, help="where to write the script")
    script.add_argument("--parallel", type=int, default=1, help="curl transfers at once in the script")


def _summary_options(summary):
    summary.add_argument("notifications", nargs="+", metavar="NOTIFICATION.json")
    summary.add_argument("--json", action="store_true", help="machine-readable output")


def _login_options(login):
    login.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    login.add_argument("--server", help="MAST server URL used to check the token")


def _logout_options(logout):
    logout.add_argument("--forget", action="store_true", help="also delete the token stored in the keyring")


def _whoami_options(whoami):
    whoami.add_argument("--server", help="MAST server URL")


def _demo_options(demo):
    demo.add_argument("--dir", default="mastbulk-demo", help="download folder (default: ./mastbulk-demo)")


#: command -> (help, examples, function adding its options)
_COMMANDS = {
    "download": ("download the products of notification files", _DOWNLOAD_EXAMPLES, _download_options),
    "script": ("write a bash + curl script that downloads the products", _SCRIPT_EXAMPLES, _script_options),
    "summary": ("what notification files hold, by event type", _SUMMARY_EXAMPLES, _summary_options),
    "login": ("store a MAST API token in the OS keyring", _AUTH_EXAMPLES, _login_options),
    "logout": ("forget the session token", _AUTH_EXAMPLES, _logout_options),
    "whoami": ("ask MAST who the current token belongs to", _AUTH_EXAMPLES, _whoami_options),
    "demo": ("download a sample notification from a bundled local server", _DEMO_EXAMPLES, _demo_options),
}


def build_parser(command=None):
    """The argument parser of ``mastbulk`` (exposed for docs and tests).

    Parameters
    ----------
    command : str, optional
        Build this subcommand only, as `parse_args` does once it has seen the command's name:
        argparse takes over a millisecond to build each subcommand, and a download should not
        wait for six it will not use. Default: all of them (for ``mastbulk --help``).
    """
    from . import __version__
    parser = _Parser(prog="mastbulk", description="Download MAST subscription products, fast and resumably.",
                     epilog="Run `mastbulk COMMAND --help` for a command's options and examples; "
                            "`mastbulk demo` tries everything offline.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, examples, add_options) in _COMMANDS.items():
        if command in (None, name):
            add_options(_add(sub, name, help_text, examples))
    return parser


def parse_args(argv=None):
    """Parse ``mastbulk`` arguments; exits 2 with one line on stderr on a usage error.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    argparse.Namespace
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command comes first (the main parser has only -h and --version): anything else, such as
    # `mastbulk -h`, gets the whole parser.
    command = argv[0] if argv and argv[0] in _COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    for option in ("workers", "parallel"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1, not {value}")
    return args


def run(args):
    """Run a parsed ``mastbulk`` command; return its exit code.

    Parameters
    ----------
    args : argparse.Namespace
        As returned by `parse_args`.

    Returns
    -------
    int
    """
    from . import commands
    return getattr(commands, args.command)(args)


def main(argv=None):
    """Entry point of the ``mastbulk`` console script: run, then exit with the command's code.

    Expected failures end in one line on stderr, never a traceback: bad input, or a file named on
    the command line that cannot be read or written, exits 2; Ctrl-C exits 130, keeping partial
    files for the next run to resume.
    """
    try:
        code = run(parse_args(argv))
    except KeyboardInterrupt:
        print("mastbulk: interrupted; partial files are kept and the next run resumes them", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = _closed_pipe()
    except InputError as err:
        code = _fail(err, EXIT_USAGE)
    except MastBulkError as err:
        code = _fail(err, EXIT_FAILED)
    except OSError as err:  # e.g. --manifest or -o in a folder that cannot be written
        where = f"{err.filename}: " if err.filename else ""
        code = _fail(f"{where}{err.strerror or err}", EXIT_USAGE)
    _skip_final_collection()
    sys.exit(code)


def _skip_final_collection():
    # At exit the interpreter runs the cyclic garbage collector over every object still alive
    # (modules, rows, results): about 15 ms, a tenth of a no-op run, to free memory the exit frees
    # anyway. Freezing them (from an atexit handler, so only at a real exit) skips that; atexit
    # handlers, stream flushes and module clean-up still run. Every file this command writes is
    # closed before `run` returns.
    import atexit
    import gc
    atexit.register(gc.freeze)


def _fail(message, code):
    print(f"mastbulk: error: {message}", file=sys.stderr)
    return code


def _closed_pipe():
    # `mastbulk summary x.json | head`: the reader left; stop quietly, as other Unix tools do.
    # Python would otherwise complain again while flushing stdout at exit.
    import os
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_FAILED
