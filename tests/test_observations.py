"""Observations product tables on the engine, and product lists fetched chunk by chunk."""

import os
import shutil
import subprocess

import pytest
from astropy.table import Table
from astroquery.mast import conf as mast_conf

from astroquery_mastbulk import MastBulkError, Observations, ObservationsClass, conf, get_product_list_chunked
from astroquery_mastbulk.observations import plan_product_jobs

from conftest import TOKEN
from helpers import assert_file_matches, leftovers

TWO = ["2003520261", "2003520262"]


@pytest.fixture(autouse=True)
def quick_retries():
    with conf.set_temp("backoff", 0.01), conf.set_temp("backoff_max", 0.05):
        yield


def observations(obsids):
    """An observations table as ``query_criteria`` returns it (the columns get_product_list reads)."""
    return Table({"obsid": obsids, "obs_id": [f"obs{o}" for o in obsids],
                  "target_name": ["NGC 1"] * len(obsids)})


def product_table(obsids=TWO):
    return Observations.get_product_list(observations(obsids))


def test_two_observations_download_in_astroquery_layout(server, tmp_path):
    products = product_table()
    server.reset()
    manifest = Observations.download_products(products, download_dir=tmp_path, verbose=False)
    assert manifest.colnames[:4] == ["Local Path", "Status", "Message", "URL"]
    # astroquery removes the duplicate dataURI (the visit's combined product listed twice).
    assert len(products) == 10 and len(manifest) == 9
    assert set(manifest["Status"]) == {"COMPLETE"}
    for row, product in zip(manifest, products):
        expected = tmp_path / "mastDownload" / "HST" / product["obs_id"] / product["productFilename"]
        assert row["Local Path"] == str(expected)
        assert row["URL"] == f"{server.url}/api/v0.1/Download/file?uri={product['dataURI']}"
        assert_file_matches(server, expected)
    assert {r.path for r in server.requests(method="GET")} == {"/api/v0.1/Download/file"}
    assert leftovers(tmp_path) == []


def test_faults_as_for_mast_missions(server, tmp_path):
    products = product_table()
    flaky, gone = products["productFilename"][1], products["productFilename"][6]
    server.add_fault(flaky, "status", count=3, status=503)
    server.missing.add(gone)
    manifest = Observations.download_products(products, download_dir=tmp_path, verbose=False)
    status = dict(zip(manifest["filename"], manifest["Status"]))
    assert status.pop(gone) == "ERROR" and set(status.values()) == {"COMPLETE"}
    assert "HTTP 404" in manifest["Message"][list(manifest["filename"]).index(gone)]
    assert len(server.requests(name=flaky, method="GET")) == 4
    assert_file_matches(server, manifest["Local Path"][1])
    assert leftovers(tmp_path) == []


def test_astroquery_filters(server, tmp_path):
    products = product_table()
    manifest = Observations.download_products(products, download_dir=tmp_path, verbose=False,
                                              productType="SCIENCE", extension="fits")
    assert sorted(manifest["filename"]) == ["hst_2003520260_drz.fits"] + sorted(
        f"obs{o}_{s}.fits" for o in TWO for s in ("raw", "flt"))
    manifest = Observations.download_products(products, download_dir=tmp_path, verbose=False, mrp_only=True,
                                              productSubGroupDescription="!DRZ")
    assert sorted(manifest["filename"]) == [f"obs{o}_flt.fits" for o in TWO]
    assert set(manifest["Status"]) == {"SKIPPED"}  # already there from the first call
    with pytest.warns(Warning, match="No products to download"):
        assert Observations.download_products(products, extension="png", verbose=False) is None


def test_obsids_are_looked_up_then_downloaded(server, tmp_path):
    folder = tmp_path / "flat"
    manifest = Observations.download_products(TWO[0], download_dir=folder, verbose=False, flat=True,
                                              extension="fits")
    files = [name for name in os.listdir(folder) if not name.startswith(".")]  # not the engine's own
    assert sorted(files) == sorted(manifest["filename"])
    assert len(manifest) == 4 and set(manifest["Status"]) == {"COMPLETE"}


def test_chunked_lookup_merges_and_deduplicates(server):
    obsids = [f"20035202{i:02d}" for i in range(12)]
    products = Observations.get_product_list_chunked(observations(obsids), chunk_size=5, max_workers=3)
    per_obs = 4  # own files; the visit's combined product is listed by all 10 of 2003520200..09
    assert len(products) == 12 * per_obs + 2 and len(set(products["productFilename"])) == len(products)
    first = [f"obs{obsids[0]}_{suffix}" for suffix in ("raw.fits", "flt.fits", "asn.fits", "flt.jpg")]
    assert list(products["productFilename"][:per_obs]) == first  # input order, not sorted
    invokes = server.requests(endpoint="invoke")
    chunks = sorted(record.body["params"]["obsid"] for record in invokes)
    assert chunks == sorted([",".join(obsids[:5]), ",".join(obsids[5:10]), ",".join(obsids[10:])])
    assert len(server.requests(endpoint="columnsconfig")) <= 1  # fetched once, then cached


def test_chunked_lookup_retries_a_timed_out_chunk(server):
    server.add_fault("invoke", "status", status=504)
    with mast_conf.set_temp("timeout", 1):
        server.add_fault("invoke", "slow", delay=1.1)  # past astroquery's own time limit: TimeoutError
        products = get_product_list_chunked(["1", "2", "3"], chunk_size=2, max_workers=1)
    assert len(products) == 3 * 4 + 1
    statuses = [record.status for record in server.requests(endpoint="invoke")]
    assert statuses == [504, 200, 200, 200]


def test_chunk_that_keeps_timing_out_names_its_observations(server):
    server.add_fault("invoke", "status", count=50, status=503)
    with conf.set_temp("retries", 2):
        with pytest.raises(MastBulkError, match=r"observations 7\.\.8 failed after 3 attempts"):
            get_product_list_chunked(["7", "8"])
    assert len(server.requests(endpoint="invoke")) == 3


def test_token_goes_with_exclusive_access_products(server, tmp_path):
    products = product_table(TWO[:1])
    server.set_file(products["productFilename"][0], eap=True)
    anonymous = Observations.download_products(products[:1], download_dir=tmp_path, verbose=False)
    assert anonymous["Status"][0] == "ERROR" and "HTTP 401" in anonymous["Message"][0]
    client = ObservationsClass(mast_token=TOKEN)
    manifest = client.download_products(products[:1], download_dir=tmp_path, verbose=False)
    assert manifest["Status"][0] == "COMPLETE"
    assert server.requests(method="GET")[-1].headers["authorization"] == f"token {TOKEN}"


def test_unsafe_rows_are_refused(server, tmp_path):
    products = product_table(TWO[:1])[:3]
    products["obs_id"] = products["obs_id"].astype(object)
    products["obs_id"][0] = ".."
    products["dataURI"][1] = "https://elsewhere.example/x.fits"
    jobs = plan_product_jobs(products, server=server.url, download_dir=tmp_path)
    assert "'..'" in jobs[0].refused and "not a mast: URI" in jobs[1].refused and jobs[2].refused is None
    manifest = Observations.download_products(products, download_dir=tmp_path, verbose=False)
    assert list(manifest["Status"]) == ["ERROR", "ERROR", "COMPLETE"]
    assert len(server.requests(method="GET")) == 1


def test_enable_upgrades_astroquery_observations(server, tmp_path):
    import astroquery.mast
    import astroquery_mastbulk
    from astroquery.mast import ObservationsClass as Original
    before = Original.__dict__["download_products"]
    products = product_table(TWO[:1])
    astroquery_mastbulk.enable()
    try:
        manifest = astroquery.mast.Observations.download_products(products, download_dir=tmp_path,
                                                                  verbose=False)
        assert "bytes" in manifest.colnames and set(manifest["Status"]) == {"COMPLETE"}
        assert Original().download_products.__func__ is astroquery_mastbulk.observations.download_products
    finally:
        astroquery_mastbulk.disable()
    assert Original.__dict__["download_products"] is before


def test_a_whole_program_as_the_seed_fetches_it(server, tmp_path):
    matched = Observations.query_criteria(obs_collection="HST", proposal_id="17001")
    files = Observations.get_product_list_chunked(matched)
    assert len(server.requests(endpoint="invoke")) == 1 + 3  # the query, then 12 observations in 3 chunks
    assert len(files) == 12 * 4 + 3  # each observation's files, and each visit's combined product once
    manifest = Observations.download_products(files, download_dir=tmp_path, extension="fits", verbose=False)
    assert len(manifest) == 12 * 3 + 3 and set(manifest["Status"]) == {"COMPLETE"}
    for path in manifest["Local Path"]:
        assert_file_matches(server, path)


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs bash and curl")
def test_curl_flag_writes_our_script_and_it_runs(server, tmp_path):
    products = product_table()
    server.reset()
    folder = tmp_path / "dl"
    table = Observations.download_products(products, download_dir=folder, curl_flag=True, extension="fits")
    assert server.log == []  # written here, not fetched from MAST's bundle service
    script = table["Local Path"][0]
    assert table["Status"][0] == "COMPLETE" and os.path.basename(script).startswith("mastDownload_")
    env = {key: value for key, value in os.environ.items() if key != "MAST_API_TOKEN"}
    run = subprocess.run(["bash", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    fits = [row for row in products if row["productFilename"].endswith(".fits")]
    for row in fits:
        assert_file_matches(server, folder / "mastDownload" / "HST" / row["obs_id"] / row["productFilename"])
    assert {r.path for r in server.requests(method="GET")} == {"/api/v0.1/Download/file"}


def test_subclass_keeps_astroquery_methods():
    from astroquery.mast import ObservationsClass as Original
    assert issubclass(ObservationsClass, Original)
    assert {name for name in vars(ObservationsClass) if not name.startswith("_")} == {
        "download_products", "get_product_list_chunked"}
    for name in ("query_criteria", "get_product_list", "filter_products", "get_metadata"):
        assert callable(getattr(Observations, name)) and name not in vars(ObservationsClass)
