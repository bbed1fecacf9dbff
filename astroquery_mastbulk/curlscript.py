"""Download jobs → a bash + curl script like the one the MAST Portal hands out.

The script fetches the same files to the same paths as `~astroquery_mastbulk.runner` does, and
uses the engine's temporary names (`~astroquery_mastbulk.transfer.part_path`), so either tool
finishes what the other began. Every value from the input reaches the script through
`shell_quote` only; the token never reaches it at all (the script asks for it when run).
"""

import html
import os
import re
import shlex
import time
from datetime import timezone
from pathlib import Path

from .errors import InputError
from .logger import log
from .partial import part_path

__all__ = ["write_script", "write_script_for_jobs", "render_script", "shell_quote"]

_MARKER = re.compile(r"@@([A-Z]+)@@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Bash itself, not Python, is the template language here: @@MARKERS@@ are filled in one regex pass
# (string.Template and str.format would clash with every "$" and "{" of the shell code).
_TEMPLATE = r'''#!/usr/bin/env bash
# Downloads @@COUNT@@ MAST product file(s) with curl. Written by astroquery-mastbulk @@VERSION@@ on @@DATE@@.
#   @@NEED@@ of them need a MAST API token (exclusive access); @@REFUSED@@ requested row(s) were left out
#   because their names are unsafe as local paths (`mastbulk download --dry-run` names them).
#
# Usage:  bash @@NAME@@ [TOKEN]
#   The token comes from the first argument, else $MAST_API_TOKEN, else a hidden prompt (asked only
#   on a terminal, and only if some file needs it). An argument is visible to other users in the
#   process list: prefer `MAST_API_TOKEN=... bash @@NAME@@` or `bash @@NAME@@ - < token-file`.
#   Files go under DOWNLOAD_FOLDER below, laid out as astroquery_mastbulk's download_products lays
#   them out; a relative folder is relative to where you run this. Set MAST_DOWNLOAD_FOLDER to use
#   another folder, and MAST_PARALLEL for the number of transfers at once.
#   Run it again to resume: complete files are kept, partial ones continue where they stopped.
#   Exit status: 0 all files on disk, 1 some failed (see MANIFEST.HTML), 2 cannot run, 130 interrupted.
set -u

DOWNLOAD_FOLDER=@@FOLDER@@
PARALLEL=@@PARALLEL@@
RETRIES=5
NEED_TOKEN=@@NEED@@
[ -n "${MAST_DOWNLOAD_FOLDER:-}" ] && DOWNLOAD_FOLDER=$MAST_DOWNLOAD_FOLDER
[ -n "${MAST_PARALLEL:-}" ] && PARALLEL=$MAST_PARALLEL
case $PARALLEL in '' | *[!0-9]* | 0) PARALLEL=1 ;; esac

PATHS=() URLS=() AUTH=() OLDER=() HTML=()
# add LOCAL-PATH URL SEND-TOKEN-THERE(1/0) REPLACE-IF-OLDER-THAN(UTC, touch -t; '' never) HTML-ESCAPED-PATH
add() { PATHS+=("$1"); URLS+=("$2"); AUTH+=("$3"); OLDER+=("$4"); HTML+=("$5"); }
# The names are data: nothing inside single quotes ($, backticks) is expanded, and that is the point.
# shellcheck disable=SC2016
{
@@FILES@@
}
NFILES=${#PATHS[@]}

die() { printf '%s\n' "$*" >&2; exit 2; }

# --- the token: never echoed, never in this file, never on curl's command line ----------------------
TOKEN=${1:-${MAST_API_TOKEN:-}}
if [ "$TOKEN" = - ]; then
  if [ -t 0 ]; then IFS= read -rs TOKEN || true; else IFS= read -r TOKEN || true; fi
fi
if [ -z "$TOKEN" ] && [ "$NEED_TOKEN" -gt 0 ]; then
  if [ -t 0 ]; then
    printf '%s file(s) are exclusive access. MAST API token (input hidden; Enter to skip them): ' \
      "$NEED_TOKEN" >&2
    IFS= read -rs TOKEN || TOKEN=''
    printf '\n' >&2
  else
    printf 'No MAST token (argument or MAST_API_TOKEN), and no terminal to ask for one: ' >&2
    printf '%s exclusive-access file(s) will fail.\n' "$NEED_TOKEN" >&2
  fi
fi
TOKEN=${TOKEN//[[:space:]]/}  # a stray newline would otherwise start a second header

# --- curl ----------------------------------------------------------------------------------------------
command -v curl >/dev/null 2>&1 || die "curl is needed: install it and run this again"
CURL_VERSION=$(curl --version | head -n 1 | cut -d ' ' -f 2)
IFS=. read -r CURL_MAJOR CURL_MINOR _ <<<"$CURL_VERSION"
CURL_MAJOR=${CURL_MAJOR//[!0-9]/} CURL_MINOR=${CURL_MINOR//[!0-9]/}
if [ -n "$TOKEN" ] && [ $((${CURL_MAJOR:-0} * 1000 + ${CURL_MINOR:-0})) -lt 7058 ]; then
  die "curl $CURL_VERSION would forward the MAST token to other hosts on redirects: use curl 7.58 or newer"
fi

# --location, not the Portal's --location-trusted: that one sends the token to whatever host a
# redirect names. With --location, curl >= 7.58 drops a custom Authorization header on a redirect
# to another host (>= 7.83: also to another port or scheme), as the Python download does.
# No --retry-all-errors: it would retry 401/403/404 too, with doubling delays, and curl's own
# retry throws away the bytes of a broken transfer; fetch() below resumes those from the file.
CURL_OPTS=(--fail --globoff --location --max-redirs 8 --create-dirs --continue-at -
  --retry "$RETRIES" --connect-timeout 10 --speed-limit 1 --speed-time 60
  --user-agent 'astroquery-mastbulk curl script' --write-out '%{http_code}')
if [ "$PARALLEL" -eq 1 ] && [ -t 2 ]; then
  CURL_OPTS+=(--progress-bar)
else
  CURL_OPTS+=(--silent --show-error)  # several progress bars, or one in a log file, are noise
fi

# run_curl INDEX PART: one curl into PART; prints the HTTP status, returns curl's exit code
run_curl() {
  if [ -n "$TOKEN" ] && [ "${AUTH[$1]}" = 1 ]; then
    # The header comes from standard input (-H @-), so the token never shows in the process list.
    curl "${CURL_OPTS[@]}" -H @- --output "$2" --url "${URLS[$1]}" <<<"Authorization: token $TOKEN"
  else
    curl "${CURL_OPTS[@]}" --output "$2" --url "${URLS[$1]}" </dev/null
  fi
}

# record INDEX STATUS DETAIL: the outcome of one file, read back for MANIFEST.HTML
record() { printf '%s\t%s\n' "$2" "$3" >"$STATE_DIR/$1"; }

# is_stale INDEX: the file on disk predates the archive's reprocessed version
is_stale() {
  [ -n "${OLDER[$1]}" ] || return 1
  TZ=UTC0 touch -t "${OLDER[$1]}" "$STATE_DIR/stamp.$1" && [ "${PATHS[$1]}" -ot "$STATE_DIR/stamp.$1" ]
}

# fetch INDEX: bring one file to its final path, through its partial file
fetch() {
  local i=$1 path=${PATHS[$1]} part code rc attempt=1 restarted=0
  part="${path%/*}/.${path##*/}.part"  # astroquery_mastbulk.transfer.part_path: shared with Python
  if [ -f "$path" ] && ! is_stale "$i"; then
    record "$i" skipped "already on disk"
    return 0
  fi
  while :; do
    code=$(run_curl "$i" "$part")
    rc=$?
    code=${code: -3}
    if [ "$rc" -eq 0 ] && [ "$code" != 416 ]; then
      [ -f "$part" ] || : >"$part"  # curl creates no file for an empty body
      if mv -f -- "$part" "$path"; then
        record "$i" retrieved "HTTP $code"
        return 0
      fi
      record "$i" failed "cannot move the partial file into place"
      return 1
    fi
    if [ "$code" = 416 ] || [ "$rc" -eq 33 ] || [ "$rc" -eq 36 ]; then
      # The server cannot continue this partial file (it is no prefix of the file, or ranges are
      # unsupported): start the file over, once, as the Python download does.
      if [ "$restarted" -eq 0 ]; then
        restarted=1
        rm -f -- "$part"
        continue
      fi
    fi
    case $rc in
      7 | 18 | 28 | 52 | 55 | 56 | 92)  # the connection failed or broke: resume from the partial file
        if [ "$attempt" -le "$RETRIES" ]; then
          sleep "$attempt"
          attempt=$((attempt + 1))
          continue
        fi ;;
    esac
    case $code in
      401 | 403) record "$i" failed "curl exit $rc, HTTP $code: needs a valid MAST token with access" ;;
      000 | '') record "$i" failed "curl exit $rc" ;;
      *) record "$i" failed "curl exit $rc, HTTP $code" ;;
    esac
    return 1
  done
}

write_manifest() {
  local i=0 status detail retrieved=0 skipped=0 failed=0
  {
    printf '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>MANIFEST</title></head><body>\n'
    printf '<h1>MAST download manifest</h1>\n<table border="1">\n'
    printf '<tr><th>#</th><th>File</th><th>Status</th><th>Detail</th></tr>\n'
    while [ "$i" -lt "$NFILES" ]; do
      status="not attempted" detail="interrupted"
      [ -f "$STATE_DIR/$i" ] && IFS=$'\t' read -r status detail <"$STATE_DIR/$i"
      case $status in
        retrieved) retrieved=$((retrieved + 1)) ;;
        skipped) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
      esac
      printf '<tr class="%s"><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>\n' \
        "${status// /-}" "$((i + 1))" "${HTML[$i]}" "$status" "$detail"
      i=$((i + 1))
    done
    printf '</table>\n<p id="summary">%d requested, %d retrieved, %d already on disk, %d failed</p>\n' \
      "$NFILES" "$retrieved" "$skipped" "$failed"
    printf '</body></html>\n'
  } >MANIFEST.HTML.tmp && mv -f MANIFEST.HTML.tmp MANIFEST.HTML
  printf '%d requested, %d retrieved, %d already on disk, %d failed: see %s/MANIFEST.HTML\n' \
    "$NFILES" "$retrieved" "$skipped" "$failed" "$DOWNLOAD_FOLDER" >&2
  [ "$failed" -eq 0 ]
}

on_interrupt() {
  trap - INT TERM
  printf '\nInterrupted: partial files are kept, and running this again resumes them.\n' >&2
  write_manifest
  exit 130
}

# --- run -------------------------------------------------------------------------------------------
if ! { mkdir -p -- "$DOWNLOAD_FOLDER" && cd -- "$DOWNLOAD_FOLDER"; }; then
  die "cannot use the download folder $DOWNLOAD_FOLDER"
fi
STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mastbulk.XXXXXXXX") || die "cannot make a temporary folder"
trap 'rm -rf -- "$STATE_DIR"' EXIT
trap on_interrupt INT TERM

if [ "$PARALLEL" -gt 1 ] && [ $((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1])) -lt 403 ]; then
  printf 'bash %s has no "wait -n": downloading one file at a time\n' "$BASH_VERSION" >&2
  PARALLEL=1
fi
i=0 running=0
while [ "$i" -lt "$NFILES" ]; do
  printf '<<< [%d/%d] %s\n' "$((i + 1))" "$NFILES" "${PATHS[$i]}" >&2
  if [ "$PARALLEL" -gt 1 ]; then
    # A background job ignores Ctrl-C unless told otherwise; this lets it stop with the script.
    (trap - INT; fetch "$i") &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
      wait -n
      running=$((running - 1))
    fi
  else
    fetch "$i"
  fi
  i=$((i + 1))
done
wait
trap - INT TERM
write_manifest || exit 1
'''


def shell_quote(value):
    """Quote ``value`` as one bash word that expands to exactly ``value``, whatever it holds.

    `shlex.quote` single-quotes anything outside a small safe set, and writes a single quote as
    ``'"'"'``; nothing inside single quotes (``$()``, backticks, newlines) is special to bash.
    """
    return shlex.quote(os.fspath(value) if isinstance(value, os.PathLike) else str(value))


def _relative(path, base):
    """``path`` below the download folder ``base``, as ``./...`` (a leading ``-`` stays a name)."""
    try:
        relative = Path(path).relative_to(base)
    except ValueError:
        raise InputError(f"{path} is not inside the download folder {base}") from None
    return "./" + relative.as_posix()


def _touch_stamp(job):
    # A reprocessed file on disk older than its archived date is stale, as the Python download judges.
    if (job.row.event_type or "").lower() != "reprocessed" or not job.row.archived_date:
        return ""
    when = job.row.archived_date
    when = when.astimezone(timezone.utc) if when.tzinfo else when
    return when.strftime("%Y%m%d%H%M.%S")


def _add_line(job, base):
    from .auth import TrustedHosts
    local = _relative(job.path, base)
    # The script's own URL is on the configured server; the token goes there only over https or loopback.
    send_token = "1" if job.url in TrustedHosts(job.url) else "0"
    words = ["add", shell_quote(local), shell_quote(job.url), send_token, shell_quote(_touch_stamp(job)),
             shell_quote(html.escape(local))]
    return " ".join(words)


def render_script(jobs, *, download_dir=None, parallel=1, name="get.sh"):
    """The text of the bash + curl script that downloads ``jobs``.

    Parameters
    ----------
    jobs : list of `~astroquery_mastbulk.jobs.DownloadJob`
        Planned with the same ``download_dir``; refused jobs are left out (only counted).
    download_dir : str or os.PathLike, optional
        The folder the jobs were planned for; default the current folder.
    parallel : int, optional
        Transfers at once when the script runs (background curls; needs bash 4.3).
    name : str, optional
        The script's file name, for its usage line.

    Returns
    -------
    str
    """
    from . import __version__
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise InputError(f"parallel must be a whole number of at least 1, not {parallel!r}")
    base = Path(download_dir if download_dir is not None else ".")
    wanted = [job for job in jobs if not job.refused]
    values = {
        "COUNT": str(len(wanted)),
        "VERSION": __version__,
        "DATE": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "REFUSED": str(len(jobs) - len(wanted)),
        "NAME": _CONTROL.sub("?", shell_quote(name)),  # it sits in a comment: a newline would end it
        "FOLDER": shell_quote(os.fspath(base)),
        "PARALLEL": str(parallel),
        "NEED": str(sum(job.needs_token for job in wanted)),
        "FILES": "\n".join(_add_line(job, base) for job in wanted) or ":",
    }
    # One pass, so a marker spelled inside a file name is never expanded in turn.
    return _MARKER.sub(lambda match: values[match.group(1)], _TEMPLATE)


def write_script(jobs, path, *, download_dir=None, parallel=1):
    """Write the bash + curl script that downloads ``jobs`` (see `render_script`) to ``path``.

    The file is written beside its final name and renamed into place, executable.

    Parameters
    ----------
    jobs : list of `~astroquery_mastbulk.jobs.DownloadJob`
    path : str or os.PathLike
        Where to write the script (overwritten).
    download_dir : str or os.PathLike, optional
        The folder the jobs were planned for; default the current folder.
    parallel : int, optional
        Transfers at once when the script runs.

    Returns
    -------
    str
        ``path``, as given.
    """
    path = os.fspath(path)
    text = render_script(jobs, download_dir=download_dir, parallel=parallel, name=os.path.basename(path))
    refused = sum(bool(job.refused) for job in jobs)
    if refused:
        log.warning("%d product(s) with names unsafe as local paths are left out of %s", refused, path)
    temporary = part_path(path)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    with open(descriptor, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    os.replace(temporary, path)
    return path


def _script_name(folder):
    """``mastDownload_YYYYMMDDhhmmss.sh`` in ``folder``, as astroquery names its curl scripts."""
    stem = "mastDownload_" + time.strftime("%Y%m%d%H%M%S")
    candidate, n = os.path.join(folder, stem + ".sh"), 1
    while os.path.exists(candidate):  # two scripts within one second: keep both
        n += 1
        candidate = os.path.join(folder, f"{stem}_{n}.sh")
    return candidate


def write_script_for_jobs(jobs, download_dir=None):
    """Write the script for ``download_products(..., curl_flag=True)``; return its status table.

    Parameters
    ----------
    jobs : list of `~astroquery_mastbulk.jobs.DownloadJob`
    download_dir : str or os.PathLike, optional
        Where the jobs' files go, and where the script is written; default the current folder.

    Returns
    -------
    `~astropy.table.Table`
        One row naming the script, as astroquery's ``Observations.download_products`` returns with
        ``curl_flag=True``: ``Local Path``, ``Status`` (COMPLETE), ``Message``, ``URL`` (empty).
    """
    from astropy.table import Table
    folder = os.fspath(download_dir) if download_dir is not None else "."
    os.makedirs(folder, exist_ok=True)
    path = write_script(jobs, _script_name(folder), download_dir=download_dir)
    return Table({"Local Path": [path], "Status": ["COMPLETE"], "Message": [""], "URL": [""]})
