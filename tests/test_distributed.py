"""Transfers on any concurrent.futures executor: order, the per-host cap, and tasks that die."""

import time
from concurrent.futures import Future, ThreadPoolExecutor

from astroquery_mastbulk import MastMissions, conf
from astroquery_mastbulk.distributed import run_transfers
from astroquery_mastbulk.transfer import EngineSettings, Transfer

from helpers import assert_file_matches, leftovers, most_at_once


def rows(n, mission="jwst"):
    return [{"filename": f"x{i:03d}_cal.fits", "fileset": "s", "mission": mission} for i in range(n)]


class DyingExecutor(ThreadPoolExecutor):
    """Runs tasks in threads, except that the task for one file fails as a lost worker would."""

    def __init__(self, doomed, **kwargs):
        super().__init__(**kwargs)
        self.doomed = doomed

    def submit(self, fn, transfer, *args):
        if transfer.path.name == self.doomed:
            future = Future()
            future.set_exception(RuntimeError("worker lost"))
            return future
        return super().submit(fn, transfer, *args)


def test_thread_pool_executor_in_order_with_a_cap_per_host(server, second_server, tmp_path):
    server.latency = second_server.latency = 0.05
    transfers = [Transfer(f"{srv.url}/search/jwst/api/v0.1/retrieve_product?product_name=y{i}.fits",
                          tmp_path / str(srv.port) / f"y{i}.fits")
                 for i in range(12) for srv in (server, second_server)]
    start = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            results = run_transfers(transfers, executor, settings=EngineSettings(max_workers=2))
    finally:
        server.latency = second_server.latency = 0.0
    assert [result.transfer for result in results] == transfers
    assert {result.status for result in results} == {"COMPLETE"}
    at_once = [most_at_once(srv.requests(method="GET"), start) for srv in (server, second_server)]
    assert max(at_once) <= 2 and most_at_once(server.log + second_server.log, start) >= 3  # side by side
    for transfer in transfers:
        assert_file_matches(server, transfer.path)


def test_a_task_that_dies_is_one_error(server, tmp_path):
    with conf.set_temp("backoff", 0.01), DyingExecutor("x002_cal.fits", max_workers=4) as executor:
        manifest = MastMissions.download_products(rows(5), download_dir=tmp_path, verbose=False,
                                                  executor=executor)
    assert list(manifest["Status"]) == ["COMPLETE", "COMPLETE", "ERROR", "COMPLETE", "COMPLETE"]
    assert manifest["Message"][2] == "task failed on the executor: RuntimeError: worker lost"
    assert len(server.requests(method="GET")) == 4 and leftovers(tmp_path) == []


def test_progress_on_done_and_check_reach_each_file(server, tmp_path):
    events, finished = [], []

    class Recorder:
        def add_total(self, nbytes):
            events.append(("total", nbytes))

        def add_bytes(self, nbytes):
            events.append(("bytes", nbytes))

        def file_done(self, result):
            events.append(("done", result.transfer.path))

    def check(path):
        return "corrupt on purpose" if "z1.fits" in path.name else None  # given the partial file

    transfers = [Transfer(f"{server.url}/api/v0.1/Download/file?uri=mast:HST/product/z{i}.fits",
                          tmp_path / f"z{i}.fits") for i in range(3)]
    with ThreadPoolExecutor(max_workers=2) as executor:
        results = run_transfers(transfers, executor, progress=Recorder(), on_done=finished.append,
                                check=check, settings=EngineSettings(backoff=0.01, backoff_max=0.02))
    assert [r.status for r in results] == ["COMPLETE", "ERROR", "COMPLETE"]
    assert "corrupt on purpose" in results[1].message and not transfers[1].path.exists()
    assert sorted(r.transfer.path for r in finished) == sorted(t.path for t in transfers)
    done = sorted(path for kind, path in events if kind == "done")
    assert done == sorted(t.path for t in transfers)
    assert sum(n for kind, n in events if kind == "bytes") == sum(r.bytes_received for r in results)
