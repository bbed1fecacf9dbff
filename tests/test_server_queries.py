"""The test server's product-list endpoints, driven by astroquery's own query code."""

import http.client
import json
import urllib.parse

import pytest
from astroquery.exceptions import RemoteServiceError
from astroquery.mast import conf as mast_conf

from astroquery_mastbulk import MastMissionsClass, ObservationsClass
from astroquery_mastbulk.testing import file_size
from astroquery_mastbulk.testing.catalog import CAOM_PRODUCT_FIELDS, OBSERVATION_SUFFIXES


def post(server, path, body, content_type="application/x-www-form-urlencoded"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def mashup(request):
    return "request=" + urllib.parse.quote(json.dumps(request))


def test_caom_products_through_astroquery(server):
    server.set_file("obs2003520261_flt.fits", size=12_345)
    products = ObservationsClass().get_product_list("2003520261")
    assert products.colnames == [name for name, _ in CAOM_PRODUCT_FIELDS]
    own = [f"obs2003520261_{suffix}" for suffix, *_ in OBSERVATION_SUFFIXES]
    assert list(products["productFilename"]) == own + ["hst_2003520260_drz.fits"]
    assert list(products["dataURI"]) == [f"mast:HST/product/{name}" for name in products["productFilename"]]
    sizes = dict(zip(products["productFilename"], products["size"]))
    assert sizes["obs2003520261_flt.fits"] == 12_345
    assert sizes["obs2003520261_raw.fits"] == file_size("obs2003520261_raw.fits")
    assert set(products["obs_collection"]) == {"HST"}
    assert list(products["obs_id"][:2]) == ["obs2003520261"] * 2
    assert products["obs_id"][-1] == "hst_2003520260"  # the visit's combined product
    invoke, = server.requests(endpoint="invoke")  # columnsconfig too, unless cached by an earlier test
    assert invoke.method == "POST" and invoke.body["service"] == "Mast.Caom.Products"
    assert invoke.body["params"] == {"obsid": "2003520261"}


def test_columns_config_is_fetched_once_per_server(server, second_server):
    client = ObservationsClass()
    portal = client._portal_api_connection
    portal._configs_by_server.pop(second_server.url, None)  # whatever an earlier test cached
    with mast_conf.set_temp("server", second_server.url):
        client.get_product_list("11")
        client.get_product_list("12")
        assert portal._column_configs["Mast.Caom.Products"]["size"]["type"] == "int"
    config, = second_server.requests(endpoint="columnsconfig")
    assert (config.method, config.body) == ("POST", "Mast.Caom.Products")
    assert len(second_server.requests(endpoint="invoke")) == 2 and server.log == []


def test_mashup_paging_as_astroquery_pages(server):
    portal = ObservationsClass()._portal_api_connection
    table = portal.service_request("Mast.Caom.Products", {"obsid": "11,12"}, pagesize=4)
    assert len(table) == 10 and len(set(table["productFilename"])) == 9  # 10's combined product twice
    pages = [record.body["page"] for record in server.requests(endpoint="invoke")]
    assert pages == [1, 2, 3]


def test_mashup_errors(server):
    portal = ObservationsClass()._portal_api_connection
    with pytest.raises(RemoteServiceError, match="unsupported service"):
        portal.service_request("Mast.Caom.Cone", {"ra": 1})
    status, body = post(server, "/api/v0/invoke", mashup({"service": "Mast.Caom.Products", "params": {}}))
    assert status == 200 and json.loads(body) == {"status": "ERROR", "msg": "obsid is required"}
    assert post(server, "/api/v0/invoke", "request=%7Bnot json")[0] == 400
    assert post(server, "/api/v0/invoke", "nothing=1")[0] == 400
    assert post(server, "/api/v0.1/Download/file?uri=mast:HST/product/x.fits", "")[0] == 404
    status, body = post(server, "/portal/Mashup/Mashup.asmx/columnsconfig", "colConfigId=Mast.Unknown")
    assert (status, json.loads(body)) == (200, {})


def test_query_faults(server):
    server.add_fault("invoke", "status", status=504)
    server.add_fault("post_list_products", "429", retry_after=3)
    body = mashup({"service": "Mast.Caom.Products", "params": {"obsid": "5"}})
    assert post(server, "/api/v0/invoke", body)[0] == 504
    assert post(server, "/api/v0/invoke", body)[0] == 200
    path = "/search/hst/api/v0.1/post_list_products"
    assert post(server, path, json.dumps({"dataset_ids": ["a"]}), "application/json")[0] == 429
    assert post(server, path, json.dumps({"dataset_ids": ["a"]}), "application/json")[0] == 200
    with pytest.raises(ValueError, match="takes only"):
        server.add_fault("invoke", "cut")


@pytest.mark.parametrize("mission, dataset, suffixes", [
    ("jwst", "jw01234001001_02101_00001_nrca1", ["uncal", "rate", "cal"]),
    ("hst", "IBL2A1010", ["raw", "flt", "drz"]),
])
def test_mission_products_through_astroquery(server, mission, dataset, suffixes):
    products = MastMissionsClass(mission=mission).get_product_list([dataset])
    names = [f"{dataset.lower()}_{suffix}.fits" for suffix in suffixes]
    assert list(products["filename"]) == names and list(products["uri"]) == names
    assert set(products["dataset"]) == {dataset}
    assert list(products["size"]) == [file_size(name) for name in names]
    record, = server.requests(endpoint="post_list_products")
    assert record.path == f"/search/{mission}/api/v0.1/post_list_products"
    assert record.body == {"dataset_ids": [dataset]}


def test_other_missions_list_mast_uris(server):
    status, body = post(server, "/search/classy/api/v0.1/post_list_products",
                        json.dumps({"dataset_ids": "T1"}), "application/json")
    products = json.loads(body)["products"]
    assert status == 200 and products[0]["uri"] == "mast:CLASSY/product/t1_raw.fits"


def test_mission_dataset_ids_download_end_to_end(server, tmp_path):
    manifest = MastMissionsClass(mission="jwst").download_products(
        "jw01234001001_02101_00001_nrca1", download_dir=tmp_path, verbose=False)
    assert list(manifest["Status"]) == ["COMPLETE"] * 3
    folder = tmp_path / "mastDownload" / "jwst" / "jw01234001001_02101_00001_nrca1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(manifest["filename"])


def test_programs_through_query_criteria(server):
    observations = ObservationsClass().query_criteria(obs_collection="HST", proposal_id=["17001", "42"])
    assert len(observations) == 24 and set(observations["proposal_id"]) == {"17001", "42"}
    assert observations["obsid"][0] == "217001011" and observations["obs_id"][0] == "obs217001011"
    invoke, = server.requests(endpoint="invoke")
    assert invoke.body["service"] == "Mast.Caom.Filtered"
    assert {"paramName": "proposal_id", "values": ["17001", "42"]} in invoke.body["params"]["filters"]
    with pytest.warns(Warning, match="no results"):
        assert len(ObservationsClass().query_criteria(obs_collection="JWST", proposal_id="17001")) == 0
    with pytest.raises(RemoteServiceError, match="filters observations only on"):
        ObservationsClass().query_criteria(proposal_id="17001", instrument_name="WFC3/IR")
