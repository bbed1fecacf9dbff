"""What each ``mastbulk`` subcommand does, given its parsed arguments (see `astroquery_mastbulk.cli`)."""

import json
import os
import sys

from .errors import InputError
from .jobs import plan_jobs, select_rows
from .subscription import load_rows, summarize

__all__ = ["download", "script", "summary", "login", "logout", "whoami", "demo", "plan_notifications"]


def _server(args):
    from .auth import _default_server  # imports astroquery only when no --server is given
    return _default_server(getattr(args, "server", None))


def _read_all(paths, *, flat):
    """Rows of every notification, each product once (same mission, fileset and file name).

    A product listed again keeps its first place but takes the row with the latest
    ``archived_date``: a later Reprocessed event must still replace an older local copy.
    """
    where, rows = {}, []
    for path in paths:
        for row in load_rows(path, flat=flat):
            key = ((row.mission or "").lower(), row.fileset, row.filename)
            if key not in where:
                where[key] = len(rows)
                rows.append(row)
            elif _newer(row, rows[where[key]]):
                rows[where[key]] = row
    return rows


def _newer(row, other):
    return row.archived_date is not None and (other.archived_date is None
                                              or row.archived_date > other.archived_date)


def _selected_rows(args):
    rows = _read_all(args.notifications, flat=args.flat)
    return select_rows(rows, extension=args.extension, event_type=args.event_type)


def _plan(rows, args):
    return plan_jobs(rows, server=_server(args), download_dir=args.dir, flat=args.flat,
                     default_mission=args.mission)


def plan_notifications(args):
    """Read, select and plan the products of ``args.notifications``; return the jobs.

    Raises
    ------
    InputError
        If no product is left after ``--event-type`` / ``--extension`` selection.
    """
    rows = _selected_rows(args)
    if not rows:
        raise InputError("no product left to download after --event-type/--extension selection")
    return _plan(rows, args)


def _check_writable(path, option):
    """Refuse before any transfer a --manifest that could not be written at the end."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")


def download(args):
    """``mastbulk download``: fetch every product; 0 if all COMPLETE or SKIPPED, 1 if any ERROR."""
    if args.manifest:
        _check_writable(args.manifest, "--manifest")
    rows = _selected_rows(args)
    if not rows:
        # Not an error: an hourly notification may hold none of the types a cron job asks for.
        if not args.quiet:
            print("mastbulk: nothing to download: no product matches --event-type/--extension",
                  file=sys.stderr)
        return 0
    jobs = _plan(rows, args)
    if args.dry_run:
        return _dry_run(jobs, args)
    from .auth import token_auth
    from .defaults import engine_settings
    from .progress import make_progress
    from .runner import run_jobs
    auth = token_auth(server=_server(args), verbose=False)
    exclusive = sum(1 for job in jobs if job.needs_token and not job.refused)
    if exclusive and not auth and not args.quiet:
        print(f"mastbulk: {exclusive} product(s) still under exclusive access and no MAST token found "
              "(`mastbulk login` or MAST_API_TOKEN): they will fail", file=sys.stderr)
    settings = engine_settings(max_workers=args.workers, cache=not args.no_cache)
    progress = make_progress(not args.quiet)
    try:
        # The folder's ledger lets an hourly re-run skip files it completed without asking the server.
        results = run_jobs(jobs, settings=settings, auth=auth, progress=progress, ledger_dir=args.dir,
                           verify=args.verify)
    finally:
        if progress is not None:
            progress.close()
    _report(results, args)
    return 1 if any(result.status == "ERROR" for result in results) else 0


def _dry_run(jobs, args):
    """Print what a download would fetch and where; touch neither the disk nor the network."""
    for job in jobs:
        if job.refused:
            print(f"REFUSED {job.row.filename}: {job.refused}")
            continue
        notes = [note for flag, note in ((job.needs_token, "exclusive access: needs a token"),
                                         (job.path.exists(), "on disk: checked against the server"))
                 if flag]
        print(f"{job.url} -> {job.path}" + (f"  ({'; '.join(notes)})" if notes else ""))
    if not args.quiet:
        print(f"mastbulk: dry run: {len(jobs)} product(s); nothing was fetched or written", file=sys.stderr)
    return 0


def _report(results, args):
    """The status table on stdout, the manifest file, and a count line (or only errors if quiet)."""
    if args.manifest or not args.quiet:
        from .manifest import results_table, write_manifest
        table = results_table(results)
        if args.manifest:
            write_manifest(table, args.manifest)
        if not args.quiet:
            table[["Local Path", "Status", "Message"]].pprint_all()
    if args.quiet:
        for result in results:
            if result.status == "ERROR":
                where = result.job.path or result.job.row.filename
                print(f"ERROR {where}: {result.message}", file=sys.stderr)
        return
    counts = {status: sum(r.status == status for r in results) for status in ("COMPLETE", "SKIPPED", "ERROR")}
    line = ", ".join(f"{n} {status.lower()}" for status, n in counts.items())
    print(line + (f"; status table written to {args.manifest}" if args.manifest else ""), file=sys.stderr)


def script(args):
    """``mastbulk script``: write the bash + curl script for the products."""
    from .curlscript import write_script
    jobs = plan_notifications(args)
    path = write_script(jobs, args.output, download_dir=args.dir, parallel=args.parallel)
    print(f"wrote {path}: run it with `bash {path}`", file=sys.stderr)
    return 0


#: What each event type of a notification means (from MAST's subscription notebook).
EVENT_TYPES = {
    "New": "new to the archive",
    "Reprocessed": "reprocessed by an updated calibration pipeline: replaces older local copies",
    "Public": "its exclusive access period (EAP) ended: now public",
}
_EAP_NAMES_SHOWN = 10


def summary(args):
    """``mastbulk summary``: counts (and bytes where known) by event type, mission and program;
    the files still under exclusive access; the archived date range. ``--json`` for machines."""
    rows = _read_all(args.notifications, flat=True)
    info = {"notifications": list(args.notifications), **summarize(rows)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    count = len(args.notifications)
    source = args.notifications[0] if count == 1 else f"{count} notifications"
    from .progress import size_text
    total = f" ({size_text(info['bytes'])})" if info["bytes"] is not None else ""
    print(f"{source}: {info['products']} products{total}")
    for key, title in (("by_event_type", "event type"), ("by_mission", "mission"), ("by_program", "program")):
        print(f"by {title}")
        notes = EVENT_TYPES if key == "by_event_type" else {}
        _print_counts(info[key], info["bytes_" + key], notes)
    eap = info["eap_files"]
    if not eap:
        print("exclusive access: none (no token needed)")
    else:
        print(f"exclusive access: {len(eap)} product(s) before their public release date need a MAST token "
              "(`mastbulk login`)")
        for name in eap[:_EAP_NAMES_SHOWN]:
            print(f"  {name}")
        if len(eap) > _EAP_NAMES_SHOWN:
            print(f"  ... and {len(eap) - _EAP_NAMES_SHOWN} more (--json lists them all)")
    if info["archived_oldest"]:
        print(f"archived: {_utc_text(info['archived_oldest'])} to {_utc_text(info['archived_newest'])}")
    return 0


def _print_counts(counts, sizes, notes):
    from .progress import size_text
    width = max(len(label) for label in counts)
    for label, count in counts.items():
        # Only some rows may carry a size: a label none of whose rows does shows a blank, not 0.
        size = f"  {size_text(sizes[label]) if label in sizes else '':>9}" if sizes else ""
        note = f"  {notes[label]}" if label in notes else ""
        print(f"  {label:<{width}}  {count:>6}{size}{note}")


def _utc_text(iso):
    return iso[:19].replace("T", " ") + " UTC"


def login(args):
    """``mastbulk login``: read a token (hidden prompt or stdin), check it, store it in the keyring."""
    from .auth import TOKEN_ENV, keyring_backend_name, login_and_store
    name = login_and_store(token_stdin=args.token_stdin, server=_server(args))
    print(f"Logged in as {name}; the token is stored in the OS keyring ({keyring_backend_name()})",
          file=sys.stderr)
    if os.environ.get(TOKEN_ENV):
        print(f"note: {TOKEN_ENV} is set and is used before the stored token", file=sys.stderr)
    return 0


def logout(args):
    """``mastbulk logout``: forget the token (``--forget`` deletes the stored one)."""
    from .auth import TOKEN_ENV, forget_token
    if not args.forget:
        print("mastbulk keeps no token between commands; `mastbulk logout --forget` deletes the one "
              "stored in the OS keyring", file=sys.stderr)
    elif forget_token(delete_stored=True):
        print("Deleted the MAST token stored in the OS keyring", file=sys.stderr)
    else:
        print("No MAST token was stored in the OS keyring", file=sys.stderr)
    if os.environ.get(TOKEN_ENV):
        print(f"note: {TOKEN_ENV} is still set in this environment", file=sys.stderr)
    return 0


def whoami(args):
    """``mastbulk whoami``: who MAST says the current token belongs to."""
    from .auth import whoami as ask
    print(ask(_server(args)))
    return 0


def demo(args):
    """``mastbulk demo``: a real download of the bundled notification from a bundled local server."""
    from .demo import run_demo
    return run_demo(args.dir)
