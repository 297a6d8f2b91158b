"""cloudroi.CRS against GDAL: files GDAL writes (through rasterio) for every projection method
cloudroi reads from GeoTIFF keys, user-defined datums, ellipsoids, prime meridians, units and the
ESRI PE string; each CRS cloudroi reads must equal GDAL's reading of the same file, and the
GeoTIFF cloudroi writes must read back in GDAL as the same CRS. Files GDAL does not write (an
EPSG conversion code, unsupported methods, geocentric) are written key by key with tifffile."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import rasterio
import tifffile
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS as RioCRS

import cloudroi
from cloudroi import CRS, CRSError
from cloudroi.crs import crs_info
from cloudroi.outputs import GeoRef, encode_geotiff
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from cloudroi.tiff.geokeys import crs_from_geokeys, encode_directory, geotiff_keys, read_directory
from tests.upstream import Upstream

GT = (1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0)
PIXELS = (np.arange(24 * 32, dtype=np.uint16).reshape(1, 24, 32) % 251).astype(np.uint8)

_base_4326_laea = pyproj.crs.ProjectedCRS(
    name="LAEA on EPSG:4326",
    conversion=pyproj.crs.coordinate_operation.LambertAzimuthalEqualAreaConversion(
        latitude_natural_origin=52, longitude_natural_origin=10, false_easting=4321000
    ),
    geodetic_crs=pyproj.CRS.from_epsg(4326),
).to_wkt()
_grads = (
    'PROJCS["custom grads",GEOGCS["NTF grads",DATUM["NTF_grads",SPHEROID["Clarke 1880 (IGN)",'
    '6378249.2,293.466021293627]],PRIMEM["Greenwich",0],UNIT["grad",0.015707963267949,'
    'AUTHORITY["EPSG","9105"]]],PROJECTION["Lambert_Conformal_Conic_1SP"],'
    'PARAMETER["latitude_of_origin",52],PARAMETER["central_meridian",1.5],'
    'PARAMETER["scale_factor",0.99987742],PARAMETER["false_easting",600001],'
    'PARAMETER["false_northing",2200000],UNIT["metre",1]]'
)

#: (id, the CRS given to GDAL): every method of cloudroi.tiff.projections, then datums & co.
PROJECTIONS = [
    ("tmerc", "+proj=tmerc +lat_0=0 +lon_0=13.7 +k=0.9997 +x_0=70000 +ellps=bessel +units=m"),
    ("tmerc-south", "+proj=tmerc +lat_0=-22 +lon_0=19 +k=1 +axis=wsu +ellps=WGS84 +units=m"),
    ("mercator-1sp", "+proj=merc +lon_0=10 +k=0.99 +x_0=100 +y_0=200 +datum=WGS84"),
    ("mercator-2sp", "+proj=merc +lon_0=10 +lat_ts=30 +x_0=100 +y_0=200 +datum=WGS84"),
    (
        "lcc-1sp",
        "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=3 +k_0=0.9998 +x_0=6e5 +y_0=2e5 +ellps=GRS80",
    ),
    (
        "lcc-2sp-us-feet",
        "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +x_0=1000 +y_0=2000 +datum=NAD83 "
        "+units=us-ft",
    ),
    ("albers", "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=7 +datum=NAD83"),
    ("laea", "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"),
    ("polar-stereo-a", "+proj=stere +lat_0=90 +lon_0=-45 +k=0.994 +x_0=2e6 +y_0=2e6 +datum=WGS84"),
    ("polar-stereo-b-south", "+proj=stere +lat_0=-90 +lat_ts=-71 +lon_0=0 +datum=WGS84"),
    ("polar-stereo-b-north", "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +datum=WGS84"),
    (
        "oblique-stereo",
        "+proj=sterea +lat_0=52.15616055555555 +lon_0=5.38763888888889 +k=0.9999079 "
        "+x_0=155000 +y_0=463000 +ellps=bessel +units=m",
    ),
    ("equirectangular", "+proj=eqc +lat_ts=30 +lat_0=0 +lon_0=0 +datum=WGS84"),
    ("equirectangular-lat0", "+proj=eqc +lat_ts=30 +lat_0=10 +lon_0=5 +datum=WGS84"),
    ("sinusoidal-sphere", "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m"),
    ("orthographic", "+proj=ortho +lat_0=40 +lon_0=-100 +datum=WGS84"),
    (
        "hotine-a",
        "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +k=0.99984 +x_0=804671 +y_0=0 "
        "+no_uoff +gamma=323.1301023611111 +ellps=evrst69",
    ),
    (
        "hotine-b",
        "+proj=omerc +lat_0=4 +lonc=115 +alpha=53.31582047222222 +k=0.99984 +x_0=590476.87 "
        "+y_0=442857.65 +gamma=53.13010236111111 +ellps=evrst69",
    ),
    ("cylindrical-equal-area", "+proj=cea +lat_ts=30 +lon_0=0 +datum=WGS84"),
    ("cassini", "+proj=cass +lat_0=10.44 +lon_0=-61.33 +x_0=86501.46 +ellps=clrk80"),
    ("polyconic", "+proj=poly +lat_0=0 +lon_0=-54 +x_0=5000000 +y_0=10000000 +ellps=aust_SA"),
    ("nzmg", "+proj=nzmg +lat_0=-41 +lon_0=173 +x_0=2510000 +y_0=6023150 +ellps=intl"),
    ("equidistant-conic", "+proj=eqdc +lat_0=39 +lon_0=-96 +lat_1=33 +lat_2=45 +datum=NAD83"),
    ("azimuthal-equidistant", "+proj=aeqd +lat_0=40 +lon_0=-100 +x_0=10 +y_0=20 +datum=WGS84"),
    ("miller", "+proj=mill +lon_0=10 +a=6371000 +b=6371000"),
    ("robinson", "+proj=robin +lon_0=10 +datum=WGS84"),
    ("van-der-grinten", "+proj=vandg +lon_0=0 +a=6371000 +b=6371000"),
    ("gnomonic", "+proj=gnom +lat_0=90 +lon_0=0 +datum=WGS84"),
    ("stereographic", "+proj=stere +lat_0=40 +lon_0=10 +k=0.999 +datum=WGS84"),
]
DATUMS = [
    ("datum-epsg-nad83", "+proj=tmerc +lat_0=0 +lon_0=-75 +k=0.9999 +x_0=3e5 +datum=NAD83"),
    ("ellipsoid-a-rf", "+proj=tmerc +lat_0=1 +lon_0=9 +k=1 +x_0=3e5 +a=6378000 +rf=299 +units=m"),
    ("prime-meridian-paris", "+proj=lcc +lat_1=46.8 +lat_0=46.8 +lon_0=0 +k_0=0.9998 +pm=paris"),
    ("prime-meridian-lisbon", "+proj=tmerc +lat_0=0 +lon_0=9 +k=1 +ellps=intl +pm=lisbon"),
    (
        "towgs84-7",
        "+proj=tmerc +lat_0=0 +lon_0=9 +k=1 +x_0=3500000 +ellps=bessel "
        "+towgs84=598.1,73.7,418.2,0.202,0.045,-2.455,6.7 +units=m",
    ),
    ("towgs84-3", "+proj=utm +zone=32 +ellps=intl +towgs84=-87,-98,-121,0,0,0,0 +units=m"),
    ("unit-size", "+proj=cass +lat_0=10 +lon_0=-61 +a=6378293.6 +b=6356617.9 +to_meter=0.2011"),
    ("grads", _grads),
    ("geographic-epsg-base", _base_4326_laea),
    ("geographic-custom", "+proj=longlat +a=6378000 +rf=299 +pm=10 +no_defs"),
    ("geographic-intl", "+proj=longlat +ellps=intl +no_defs"),
]
CASES = PROJECTIONS + DATUMS
#: GDAL's ESRI PE flavour: the WKT in PCSCitationGeoKey (Equal Earth has no other GeoTIFF form)
ESRI_CASES = [
    ("esri-equal-earth", "+proj=eqearth +lon_0=0 +datum=WGS84"),
    ("esri-tmerc", "+proj=tmerc +lat_0=0 +lon_0=13.7 +k=0.9997 +x_0=70000 +ellps=bessel"),
    ("esri-geographic", "+proj=longlat +ellps=intl +no_defs"),
]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in cases]


def write_gdal(path: Path, definition: str, **options: Any) -> Path:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": PIXELS.shape[2],
        "height": PIXELS.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": RioCRS.from_user_input(definition),
        "transform": rasterio.Affine.from_gdal(*GT),
        **options,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's warnings about CRS conversions
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(PIXELS)
    return path


def gdal_crs(path: Path) -> pyproj.CRS:
    with rasterio.open(path) as src:
        assert src.crs is not None
        return pyproj.CRS.from_wkt(src.crs.to_wkt())


def same(a: pyproj.CRS, b: pyproj.CRS) -> bool:
    return bool(a.equals(b, ignore_axis_order=True))


async def read_crs(path: Path) -> tuple[CRS | None, dict[str, Any]]:
    async with cloudroi.open(str(path)) as img:
        return img.crs, img.info()


def write_cloudroi(path: Path, crs: CRS | int | None) -> Path:
    path.write_bytes(encode_geotiff(PIXELS, GeoRef(GT, crs, None)))
    return path


def pe_string(crs: CRS) -> str | None:
    text = dict(crs.geokeys).get(3073)
    return text if isinstance(text, str) and "ESRI PE String = " in text else None


# --------------------------------------------------------------------------------------------
# GDAL-written files: reading, info, writing back
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "definition"), CASES + ESRI_CASES, ids=_ids(CASES + ESRI_CASES))
async def test_user_defined_crs_reads_as_gdal_reads_it(
    tmp_path: Path, name: str, definition: str
) -> None:
    options = {"GEOTIFF_KEYS_FLAVOR": "ESRI_PE"} if name.startswith("esri") else {}
    src = write_gdal(tmp_path / f"{name}.tif", definition, **options)
    want = gdal_crs(src)
    crs, info = await read_crs(src)
    assert crs is not None  # the code before cloudroi.CRS said None: no EPSG code
    assert crs.epsg is None
    assert crs.note is None
    assert same(want, crs.to_pyproj())
    assert (pe_string(crs) is not None) == name.startswith("esri")
    # info(): the EPSG entry stays None, the definition is there as WKT2 and PROJJSON
    assert info["crs"] is None
    assert same(want, pyproj.CRS.from_wkt(info["crs_wkt"]))
    assert same(want, pyproj.CRS.from_json_dict(info["crs_projjson"]))
    assert info["crs_note"] is None
    assert info["crs_description"] == crs.description
    assert json.loads(json.dumps(info)) == info
    # cloudroi's GeoTIFF: GDAL reads the same CRS, cloudroi the same keys
    out = write_cloudroi(tmp_path / "out.tif", crs)
    assert same(want, gdal_crs(out))
    again, _ = await read_crs(out)
    assert again == crs


@pytest.mark.parametrize(("name", "definition"), CASES + ESRI_CASES, ids=_ids(CASES + ESRI_CASES))
def test_user_input_crs_writes_keys_gdal_reads(tmp_path: Path, name: str, definition: str) -> None:
    """A CRS made from user input (here GDAL's own CRS object) becomes GeoKeys GDAL reads back as
    the same CRS: parameters for the methods cloudroi knows, the ESRI PE string otherwise."""
    src = write_gdal(tmp_path / f"{name}.tif", definition)
    with rasterio.open(src) as ds:
        crs = CRS.from_user_input(ds.crs)
    want = gdal_crs(src)
    assert crs.epsg is None
    assert crs.wkt is not None
    assert same(want, crs.to_pyproj())
    assert (pe_string(crs) is not None) == (name == "esri-equal-earth")
    assert same(want, gdal_crs(write_cloudroi(tmp_path / "out.tif", crs)))


@pytest.mark.parametrize(
    "definition",
    [
        "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
        _grads,
        pyproj.CRS(_base_4326_laea).to_json(),
        "+proj=eqearth +lon_0=0 +datum=WGS84",
        "+proj=igh +lon_0=0 +datum=WGS84",
    ],
    ids=["proj-string", "wkt1", "projjson", "equal-earth", "interrupted-goode"],
)
def test_text_crs_round_trips_through_gdal(tmp_path: Path, definition: str) -> None:
    crs = CRS.from_user_input(definition)
    want = pyproj.CRS.from_user_input(definition)
    assert crs.epsg is None
    assert same(want, crs.to_pyproj())
    assert same(want, gdal_crs(write_cloudroi(tmp_path / "out.tif", crs)))
    assert same(want, pyproj.CRS.from_user_input(crs.to_string()))
    assert same(want, pyproj.CRS.from_json(crs.to_projjson()))


async def test_epsg_files_keep_their_code(tmp_path: Path) -> None:
    for code in (32633, 4326, 3857, 2056):
        src = write_gdal(tmp_path / f"{code}.tif", f"EPSG:{code}")
        crs, info = await read_crs(src)
        assert isinstance(crs, CRS)
        assert crs.epsg == code
        assert crs == code  # the int comparison existing code relies on
        assert crs == f"EPSG:{code}"
        assert crs.geokeys == ()
        assert info["crs"] == code
        assert info["crs_description"] == f"EPSG:{code}"
        assert same(pyproj.CRS.from_epsg(code), pyproj.CRS.from_wkt(info["crs_wkt"]))
        with rasterio.open(write_cloudroi(tmp_path / "out.tif", crs)) as ds:
            assert ds.crs.to_epsg() == code
    assert CRS.from_user_input(pyproj.CRS.from_epsg(32633)) == 32633
    assert CRS.from_user_input(RioCRS.from_epsg(3035)).epsg == 3035
    # a CRS built from an EPSG CRS's WKT by hand is written as that code
    by_hand = CRS(wkt=pyproj.CRS.from_epsg(32632).to_wkt())
    with rasterio.open(write_cloudroi(tmp_path / "hand.tif", by_hand)) as ds:
        assert ds.crs.to_epsg() == 32632


# --------------------------------------------------------------------------------------------
# key directories GDAL does not write: an EPSG conversion, unsupported methods and models
# --------------------------------------------------------------------------------------------


def write_keys(path: Path, keys: list[tuple[int, int, int, int]], doubles: list[float]) -> Path:
    """A GeoTIFF whose key directory is exactly ``keys`` (key, location, count, value)."""
    directory = [1, 1, 0, len(keys)]
    for entry in sorted(keys):
        directory += entry
    extratags: list[tuple[int, str, int, Any, bool]] = [
        (33550, "d", 3, (GT[1], -GT[5], 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, GT[0], GT[3], 0.0), True),
        (34735, "H", len(directory), tuple(directory), True),
    ]
    if doubles:
        extratags.append((34736, "d", len(doubles), tuple(doubles), True))
    tifffile.imwrite(path, PIXELS[0], extratags=extratags, metadata=None)
    return path


async def test_epsg_conversion_code_reads_as_gdal_reads_it(tmp_path: Path) -> None:
    # user-defined PCS on WGS 84 whose projection is EPSG conversion 16033 (UTM zone 33N), in feet
    keys = [
        (1024, 0, 1, 1),
        (2048, 0, 1, 4326),
        (3072, 0, 1, 32767),
        (3074, 0, 1, 16033),
        (3076, 0, 1, 9002),
    ]
    src = write_keys(tmp_path / "conversion.tif", keys, [])
    want = gdal_crs(src)
    crs, info = await read_crs(src)
    assert crs is not None
    assert crs.epsg is None
    assert same(want, crs.to_pyproj())
    assert "EPSG conversion 16033" in info["crs_description"]
    assert same(want, gdal_crs(write_cloudroi(tmp_path / "out.tif", crs)))


@pytest.mark.parametrize(
    ("keys", "doubles", "note"),
    [
        # Rosenmund oblique Mercator (ProjCoordTransGeoKey 5): neither GDAL nor cloudroi reads it
        (
            [(1024, 0, 1, 1), (2048, 0, 1, 4326), (3072, 0, 1, 32767), (3075, 0, 1, 5)],
            [],
            "unsupported GeoTIFF projection method 5",
        ),
        (
            [(1024, 0, 1, 1), (2048, 0, 1, 4326), (3072, 0, 1, 32767)],
            [],
            "without a projection",
        ),
        ([(1024, 0, 1, 3), (2050, 0, 1, 6326)], [], "geocentric"),
    ],
    ids=["unsupported-method", "no-method", "geocentric"],
)
async def test_uninterpretable_crs_is_noted_not_dropped(
    tmp_path: Path, keys: list[tuple[int, int, int, int]], doubles: list[float], note: str
) -> None:
    src = write_keys(tmp_path / "odd.tif", keys, doubles)
    crs, info = await read_crs(src)
    assert crs is not None
    assert crs.epsg is None
    assert crs.note is not None
    assert note in crs.note
    assert note in info["crs_note"]
    assert info["crs"] is None
    assert info["crs_projjson"] is None
    assert info["crs_wkt"] == crs.description
    assert note in crs.description
    with pytest.raises(CRSError, match=note):
        crs.to_wkt()
    assert crs.to_string() == crs.description
    # the keys go into cloudroi's GeoTIFF as they came
    out = write_cloudroi(tmp_path / "out.tif", crs)
    again, _ = await read_crs(out)
    assert again == crs


async def test_no_geokeys_no_crs(tmp_path: Path) -> None:
    crs, info = await read_crs(write_gdal(tmp_path / "plain.tif", "EPSG:4326", crs=None))
    assert crs is None
    assert {k: v for k, v in info.items() if k.startswith("crs")} == {
        "crs": None,
        "crs_name": None,
        "crs_description": None,
        "crs_wkt": None,
        "crs_projjson": None,
        "crs_note": None,
    }


_CRS_KEY_IDS = [1024, 1025, 1026, *range(2048, 2063), *range(3072, 3097), 4096]
_ENTRY = st.tuples(
    st.sampled_from(_CRS_KEY_IDS),
    st.sampled_from([0, 34735, 34736, 34737, 7]),  # inline, the directory, doubles, ASCII, bad
    st.integers(0, 9),
    st.one_of(
        st.integers(0, 12),
        st.sampled_from([15, 28, 4326, 6326, 7019, 8901, 9001, 9102, 9105, 16033, 32767, 9815]),
        st.integers(0, 70000),
    ),
)

#: the keys that decide what kind of CRS it is, mostly user-defined ones
_SKELETON = st.tuples(
    st.sampled_from([1, 1, 2, 3, 32767, 0]),  # GTModelTypeGeoKey
    st.sampled_from([32767, 32767, 4326, 0]),  # GeographicTypeGeoKey
    st.sampled_from([32767, 32767, 32633, 0]),  # ProjectedCSTypeGeoKey
    st.sampled_from([*range(1, 29), 9815, 0]),  # ProjCoordTransGeoKey
).map(
    lambda v: [
        (key, 0, 1, value) for key, value in zip((1024, 2048, 3072, 3075), v, strict=True) if value
    ]
)


@given(
    _SKELETON.flatmap(lambda head: st.lists(_ENTRY, max_size=20).map(lambda tail: head + tail)),
    st.lists(st.floats(), max_size=12),
    st.binary(max_size=48),
)
@settings(max_examples=300, deadline=None)
def test_any_key_directory_gives_a_crs_or_none_never_a_crash(
    entries: list[tuple[int, int, int, int]], doubles: list[float], text: bytes
) -> None:
    """Whatever a file's keys say, reading them, describing, writing back and converting the CRS
    raise nothing but CRSError (info() not even that): a hostile file cannot make a 500."""
    directory = [1, 1, 0, len(entries)] + [v for entry in entries for v in entry]
    crs = crs_from_geokeys(read_directory(directory, doubles, text))
    if crs is None:
        return
    info = crs_info(crs)
    assert json.loads(json.dumps(info)) == info
    assert isinstance(crs.description, str)
    assert isinstance(crs.to_string(), str)
    encode_directory(geotiff_keys(crs))
    try:
        crs.to_pyproj()
    except CRSError:
        assert info["crs_projjson"] is None


# --------------------------------------------------------------------------------------------
# the value type
# --------------------------------------------------------------------------------------------


def test_crs_equals_its_epsg_code_as_int_and_text() -> None:
    crs = CRS(32633)
    assert crs == 32633
    assert crs == "EPSG:32633"
    assert crs == "epsg:32633"
    assert crs == CRS.from_epsg(32633)
    assert crs == CRS.from_user_input("EPSG:32633")
    assert crs != 32632
    assert crs != "EPSG:32632"
    assert crs != "32633"
    assert crs is not None
    assert crs != True  # noqa: E712 - a bool is not an EPSG code
    assert hash(crs) == hash(32633)
    assert {crs: 1}[CRS(32633)] == 1
    assert repr(crs) == "CRS(32633)"
    assert str(crs) == "EPSG:32633"
    assert crs.to_string() == "EPSG:32633"
    assert pickle.loads(pickle.dumps(crs)) == crs
    with pytest.raises(AttributeError):
        crs.epsg = 4326  # type: ignore[misc]


async def test_user_defined_crs_is_a_hashable_value(tmp_path: Path) -> None:
    src = write_gdal(tmp_path / "laea.tif", dict(PROJECTIONS)["laea"])
    a, _ = await read_crs(src)
    b, _ = await read_crs(src)
    assert a is not None
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != CRS(3035)
    assert a != 3035
    assert pickle.loads(pickle.dumps(a)) == a
    assert "Lambert Azimuthal Equal Area" in a.description
    assert "false easting 4321000" in a.description


@pytest.mark.parametrize(
    "value", [0, -4326, 2**31, True, 4326.0, b"EPSG:4326", "", "   ", None, object()]
)
def test_bad_crs_values_raise_crs_error(value: object) -> None:
    with pytest.raises(CRSError):
        CRS.from_user_input(value)


def test_bad_crs_texts_raise_crs_error() -> None:
    with pytest.raises(CRSError, match="pyproj"):
        CRS.from_user_input("+proj=nonsense +foo")
    with pytest.raises(CRSError):
        CRS()
    with pytest.raises(CRSError):
        CRS(epsg="4326")  # type: ignore[arg-type]
    with pytest.raises(CRSError, match="pyproj cannot build"):
        CRS(999999).to_wkt()
    assert issubclass(CRSError, cloudroi.CloudROIError)


# --------------------------------------------------------------------------------------------
# pyproj stays optional
# --------------------------------------------------------------------------------------------


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_cloudroi_does_not_import_pyproj(tmp_path: Path) -> None:
    src = write_gdal(tmp_path / "laea.tif", dict(PROJECTIONS)["laea"])
    code = """
import asyncio, sys
import numpy as np
import cloudroi
from cloudroi.outputs import GeoRef, encode_geotiff
assert "pyproj" not in sys.modules, "import cloudroi"
async def main():
    async with cloudroi.open(sys.argv[1]) as img:
        crs = img.crs
        data = await img.read()
        encode_geotiff(data, GeoRef(img.transform, crs, None))
        print(crs.description)
    assert crs.epsg is None
asyncio.run(main())
assert "pyproj" not in sys.modules, "reading a user-defined CRS and writing it back"
"""
    assert "Lambert Azimuthal Equal Area" in run_python(code, str(src))


def test_without_pyproj_conversions_name_the_geo_extra(tmp_path: Path) -> None:
    src = write_gdal(tmp_path / "laea.tif", dict(PROJECTIONS)["laea"])
    code = """
import asyncio, json, sys
sys.modules["pyproj"] = None  # as if it were not installed
import cloudroi
async def main():
    async with cloudroi.open(sys.argv[1]) as img:
        info = img.info()
        try:
            img.crs.to_wkt()
        except cloudroi.CRSError as exc:
            error = str(exc)
        print(json.dumps({"info": info, "error": error, "string": img.crs.to_string()}))
asyncio.run(main())
"""
    doc = json.loads(run_python(code, str(src)))
    assert "cloudroi[geo]" in doc["error"]
    info = doc["info"]
    assert info["crs"] is None
    assert info["crs_projjson"] is None
    assert info["crs_note"] is None
    assert info["crs_wkt"] == info["crs_description"] == doc["string"]
    assert "Lambert Azimuthal Equal Area" in info["crs_wkt"]


# --------------------------------------------------------------------------------------------
# the service: /info, /point and format=tif of a user-defined CRS
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def laea_service(
    server: RangeServer, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], str, pyproj.CRS]]:
    src = write_gdal(tmp_path / "laea.tif", dict(PROJECTIONS)["laea"], tiled=True)
    upstream = Upstream.publish(server, {"laea.tif": src.read_bytes()}, "crs")
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,))))
    )
    await client.start_server()
    yield client, upstream.url("laea.tif"), gdal_crs(src)
    await client.close()


async def test_service_keeps_a_user_defined_crs(
    laea_service: tuple[TestClient[Any, Any], str, pyproj.CRS],
) -> None:
    client, url, want = laea_service
    async with client.get("/info", params={"url": url}) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["crs"] is None
    assert same(want, pyproj.CRS.from_wkt(doc["crs_wkt"]))
    assert same(want, pyproj.CRS.from_json_dict(doc["crs_projjson"]))
    query = {"url": url, "window": "0,0,32,24", "format": "tif"}
    async with client.get("/region", params=query) as resp:
        assert resp.status == 200
        body = await resp.read()
    with rasterio.open(io.BytesIO(body)) as ds:
        assert same(want, pyproj.CRS.from_wkt(ds.crs.to_wkt()))
        np.testing.assert_array_equal(ds.read(), PIXELS)
    async with client.get("/point", params={"url": url, "col": "3", "row": "4"}) as resp:
        assert resp.status == 200
        point = await resp.json()
    assert point["crs"] is None  # /point's "crs" stays the EPSG code
    assert point["values"] == [int(PIXELS[0, 4, 3])]
