"""``mastbulk demo``: a real, offline download of the bundled notification from a bundled server."""

import shutil
import sys
from pathlib import Path

from .data import sample_notification

__all__ = ["run_demo"]

_NEXT_STEPS = """
What just happened: a MAST-compatible server started on {url} (loopback only), and
`mastbulk download` fetched the {n} products of the bundled notification ({notification})
concurrently into {folder}/mastDownload/<mission>/<fileset>/, each written to a temporary file
and renamed into place once complete. Run the demo again: every file is SKIPPED.

Against the real MAST, with the JSON file MAST mailed you:
  mastbulk summary event_metadata_jwst-program-NNNN_hourly_*.json
  mastbulk login                       # only for exclusive-access (EAP) products
  mastbulk download event_metadata_jwst-program-NNNN_hourly_*.json --dir /data/jwst
or from Python:
  from astroquery_mastbulk import MastMissions
  MastMissions.download_products("event_metadata_jwst-program-NNNN_hourly_YYYYMMDD_HHMMSS.json")
"""


def run_demo(folder):
    """Download the bundled sample notification from a local server into ``folder``.

    Parameters
    ----------
    folder : str or os.PathLike
        Download folder; created if needed.

    Returns
    -------
    int
        The exit code of the download (0 when every file is COMPLETE or SKIPPED).
    """
    from .cli import parse_args
    from .commands import download
    from .subscription import load_rows
    from .testing import MastServer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notification = folder / "JWST.json"
    shutil.copyfile(sample_notification(), notification)
    with MastServer() as server:
        print(f"mastbulk demo: local MAST server on {server.url}", file=sys.stderr)
        code = download(parse_args(["download", str(notification), "--dir", str(folder),
                                    "--server", server.url]))
        count = len(load_rows(notification))
        print(_NEXT_STEPS.format(url=server.url, n=count, notification=notification, folder=folder))
    return code
