"""What each ``mastbulk`` subcommand does, given its parsed arguments (see `astroquery_mastbulk.cli`)."""

import json
import sys

from .errors import InputError
from .jobs import plan_jobs, select_rows
from .subscription import load_rows, summarize

__all__ = ["download", "script", "summary", "login", "logout", "whoami", "demo", "plan_notifications"]


def _server(args):
    if getattr(args, "server", None):
        return args.server
    from astroquery.mast import conf  # costs ~0.6 s: only when no --server is given
    return conf.server


def _read_all(paths, *, flat):
    """Rows of every notification, duplicates (same mission, fileset and file) dropped."""
    seen, rows = set(), []
    for path in paths:
        for row in load_rows(path, flat=flat):
            key = ((row.mission or "").lower(), row.fileset, row.filename)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def plan_notifications(args):
    """Read, select and plan the products of ``args.notifications``; return the jobs."""
    rows = _read_all(args.notifications, flat=args.flat)
    rows = select_rows(rows, extension=args.extension, event_type=args.event_type)
    if not rows:
        raise InputError("no product left to download after --event-type/--extension selection")
    return plan_jobs(rows, server=_server(args), download_dir=args.dir, flat=args.flat,
                     default_mission=args.mission)


def download(args):
    """``mastbulk download``: fetch every product; exit 1 if any ERROR."""
    from .auth import token_auth
    from .defaults import engine_settings
    from .progress import make_progress
    from .runner import run_jobs
    jobs = plan_notifications(args)
    if args.dry_run:
        for job in jobs:
            print(f"{'REFUSED ' + job.refused if job.refused else job.url} -> {job.path or '-'}")
        return 0
    auth = token_auth(server=_server(args), verbose=False)
    if not auth and not args.quiet:
        print("mastbulk: no MAST token found (MAST_API_TOKEN or keyring): public files only", file=sys.stderr)
    settings = engine_settings(max_workers=args.workers, cache=not args.no_cache)
    progress = make_progress(not args.quiet)
    try:
        results = run_jobs(jobs, settings=settings, auth=auth, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    _report(results, args)
    return 1 if any(result.status == "ERROR" for result in results) else 0


def _report(results, args):
    failed = [result for result in results if result.status == "ERROR"]
    if args.manifest or not args.quiet:
        from .manifest import results_table, write_manifest
        table = results_table(results)
        if args.manifest:
            write_manifest(table, args.manifest)
        if not args.quiet:
            table[["Local Path", "Status", "Message"]].pprint_all()
    for result in failed if args.quiet else []:
        print(f"ERROR {result.job.path or result.job.row.filename}: {result.message}", file=sys.stderr)
    counts = {status: sum(r.status == status for r in results) for status in ("COMPLETE", "SKIPPED", "ERROR")}
    if not args.quiet:
        print(", ".join(f"{n} {status.lower()}" for status, n in counts.items()), file=sys.stderr)


def script(args):
    """``mastbulk script``: write the bash + curl script for the products."""
    from .curlscript import write_script
    jobs = plan_notifications(args)
    path = write_script(jobs, args.output, download_dir=args.dir, parallel=args.parallel)
    print(f"wrote {path}: run it with `bash {path}`", file=sys.stderr)
    return 0


def summary(args):
    """``mastbulk summary``: counts by event type, mission, program; EAP files; date range."""
    rows = _read_all(args.notifications, flat=True)
    info = summarize(rows)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['products']} products")
    for key, title in (("by_event_type", "event type"), ("by_mission", "mission"), ("by_program", "program")):
        print(f"  by {title}: " + ", ".join(f"{name} {n}" for name, n in info[key].items()))
    if info["archived_oldest"]:
        print(f"  archived from {info['archived_oldest']} to {info['archived_newest']}")
    eap = info["eap_files"]
    print(f"  {len(eap)} still under exclusive access (need a token)" + (": " + ", ".join(eap) if eap else ""))
    return 0


def login(args):
    """``mastbulk login``: read a token (hidden prompt or stdin), check it, store it in the keyring."""
    from .auth import login_and_store
    return login_and_store(token_stdin=args.token_stdin, server=args.server)


def logout(args):
    """``mastbulk logout``: forget the token (``--forget`` deletes the stored one)."""
    from .auth import forget_token
    return forget_token(delete_stored=args.forget)


def whoami(args):
    """``mastbulk whoami``: who MAST says the current token belongs to."""
    from .auth import whoami as ask
    print(ask(_server(args)))
    return 0


def demo(args):
    """``mastbulk demo``: a real download of the bundled notification from a bundled local server."""
    from .demo import run_demo
    return run_demo(args.dir)
