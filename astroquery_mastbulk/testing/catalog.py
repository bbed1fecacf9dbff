"""Deterministic product lists for the test server's query endpoints.

Three lists, in the shapes astroquery parses:

* ``Observations.query_criteria`` (Mashup service ``Mast.Caom.Filtered``), filtered on
  ``proposal_id`` (and ``obs_collection``): every program has 12 HST observations, three visits of
  four exposures, whose obsids are ``2<proposal_id, 5 digits><visit, 2 digits><exposure 1-4>``.
* ``Observations.get_product_list`` (Mashup service ``Mast.Caom.Products``): a few HST files per
  observation (``obsid``).  Observations whose obsids differ only in the last digit belong to one
  visit and share its combined product (``hst_<visit>_drz.fits``, where the visit's obsid ends in
  0), as a visit's exposures share its drizzled image on the real archive — so a chunked lookup
  has duplicates to remove.
* ``MastMissions.get_product_list`` (``post_list_products``): three files per dataset.

Every product's ``size`` is the size the download endpoints serve for its file name.
Standard library only.
"""

__all__ = ["CAOM_PRODUCT_FIELDS", "CAOM_OBSERVATION_FIELDS", "caom_products", "caom_observations",
           "caom_columns_config", "mission_products", "OBSERVATION_SUFFIXES"]

#: Columns of a ``Mast.Caom.Products`` answer, with their Mashup types, in MAST's order.
CAOM_PRODUCT_FIELDS = (
    ("obsID", "string"), ("obs_collection", "string"), ("dataproduct_type", "string"),
    ("obs_id", "string"), ("description", "string"), ("type", "string"), ("dataURI", "string"),
    ("productType", "string"), ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"), ("productDocumentationURL", "string"),
    ("project", "string"), ("prvversion", "string"), ("proposal_id", "string"),
    ("productFilename", "string"), ("size", "int"), ("parent_obsid", "string"),
    ("dataRights", "string"), ("calib_level", "int"), ("filters", "string"),
)

#: Columns of a ``Mast.Caom.Filtered`` answer (a subset of MAST's), with their Mashup types.
CAOM_OBSERVATION_FIELDS = (
    ("intentType", "string"), ("obs_collection", "string"), ("instrument_name", "string"),
    ("filters", "string"), ("target_name", "string"), ("obs_id", "string"), ("dataproduct_type", "string"),
    ("calib_level", "int"), ("t_exptime", "float"), ("proposal_id", "string"), ("dataRights", "string"),
    ("obsid", "string"),
)
_FILTERABLE = ("proposal_id", "obs_collection")

#: Files of each observation: (suffix, productType, productSubGroupDescription, calib_level,
#: minimum recommended product).
OBSERVATION_SUFFIXES = (
    ("raw.fits", "SCIENCE", "RAW", 1, False),
    ("flt.fits", "SCIENCE", "FLT", 2, True),
    ("asn.fits", "AUXILIARY", "ASN", 1, False),
    ("flt.jpg", "PREVIEW", "FLT", 2, False),
)

_MISSION_SUFFIXES = {
    "jwst": (("uncal.fits", "UNCALIBRATED"), ("rate.fits", "CALIBRATED"), ("cal.fits", "CALIBRATED")),
    "hst": (("raw.fits", "UNCALIBRATED"), ("flt.fits", "CALIBRATED"), ("drz.fits", "CALIBRATED")),
}
_OWN_ENDPOINT = ("hst", "jwst", "roman")


def _caom_row(obsid, obs_id, filename, size, product_type, subgroup, level, mrp, parent):
    return {
        "obsID": obsid, "obs_collection": "HST", "dataproduct_type": "image", "obs_id": obs_id,
        "description": f"{subgroup} {product_type.lower()} file",
        "type": "C" if obs_id.startswith("hst_") else "S",  # composite (visit) or simple (exposure)
        "dataURI": f"mast:HST/product/{filename}", "productType": product_type,
        "productGroupDescription": "Minimum Recommended Products" if mrp else "",
        "productSubGroupDescription": subgroup, "productDocumentationURL": "", "project": "CALWF3",
        "prvversion": "3.7.2", "proposal_id": "17001", "productFilename": filename, "size": size,
        "parent_obsid": parent, "dataRights": "PUBLIC", "calib_level": level, "filters": "F160W",
    }


def caom_products(obsid, size_of):
    """The product list of one observation, as rows of a ``Mast.Caom.Products`` answer.

    Parameters
    ----------
    obsid : str
        The observation's product group id.
    size_of : callable
        ``size_of(filename) -> int``, the size the server serves for that file.

    Returns
    -------
    list of dict
    """
    obs_id = f"obs{obsid}".lower()
    visit = obsid[:-1] + "0"
    rows = [_caom_row(obsid, obs_id, f"{obs_id}_{suffix}", size_of(f"{obs_id}_{suffix}"), ptype, sub,
                      level, mrp, visit)
            for suffix, ptype, sub, level, mrp in OBSERVATION_SUFFIXES]
    combined = f"hst_{visit}_drz.fits".lower()
    rows.append(_caom_row(visit, f"hst_{visit}".lower(), combined, size_of(combined), "SCIENCE", "DRZ",
                          3, True, visit))
    return rows


def caom_observations(filters):
    """The observations a ``Mast.Caom.Filtered`` request selects, as rows of its answer.

    Parameters
    ----------
    filters : list of dict
        The Mashup filter set astroquery builds (``paramName``, ``values``).

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        For a filter on another column than ``proposal_id`` or ``obs_collection``: the test
        server would otherwise silently answer with more than was asked.
    """
    wanted = {}
    for entry in filters:
        name = str(entry.get("paramName", ""))
        if name not in _FILTERABLE or entry.get("freeText"):
            raise ValueError(f"the test server filters observations only on {', '.join(_FILTERABLE)} "
                             f"(exact values), not on {name!r}")
        wanted[name] = [str(value) for value in entry.get("values", [])]
    if "proposal_id" not in wanted or "HST" not in wanted.get("obs_collection", ["HST"]):
        return []
    return [_observation(program, visit, exposure) for program in wanted["proposal_id"] if program.isdigit()
            for visit in (1, 2, 3) for exposure in (1, 2, 3, 4)]


def _observation(program, visit, exposure):
    obsid = f"2{int(program):05d}{visit:02d}{exposure}"
    return {"intentType": "science", "obs_collection": "HST", "instrument_name": "WFC3/IR",
            "filters": "F160W", "target_name": f"FIELD-{visit}", "obs_id": f"obs{obsid}",
            "dataproduct_type": "image", "calib_level": 3, "t_exptime": 1202.9, "proposal_id": program,
            "dataRights": "PUBLIC", "obsid": obsid}


def caom_columns_config(service):
    """The ``columnsconfig`` answer for ``service``: column → properties, or {} if unknown."""
    fields = {"Mast.Caom.Products": CAOM_PRODUCT_FIELDS, "Mast.Caom.Cone": CAOM_OBSERVATION_FIELDS}
    return {name: {"text": name, "type": kind, "vot.datatype": kind}
            for name, kind in fields.get(service, ())}


def mission_products(mission, dataset, size_of):
    """The product list of one dataset, as rows of a ``post_list_products`` answer.

    Parameters
    ----------
    mission : str
        Lower-case mission name, from the URL.
    dataset : str
        Dataset id, as asked.
    size_of : callable
        ``size_of(filename) -> int``.

    Returns
    -------
    list of dict
        hst/jwst/roman rows carry the file name as ``uri`` (their endpoint takes a name); other
        missions carry a ``mast:`` URI.
    """
    rows = []
    for suffix, category in _MISSION_SUFFIXES.get(mission, _MISSION_SUFFIXES["hst"]):
        filename = f"{dataset.lower()}_{suffix}"
        uri = filename if mission in _OWN_ENDPOINT else f"mast:{mission.upper()}/product/{filename}"
        rows.append({
            "product_key": filename, "access": "PUBLIC", "dataset": dataset,
            "instrument_name": "", "filters": "", "filename": filename, "uri": uri,
            "authz_primary_identifier": dataset, "authz_secondary_identifier": "",
            "file_suffix": suffix.split(".", 1)[0], "category": category, "size": size_of(filename),
            "type": "science",
        })
    return rows
