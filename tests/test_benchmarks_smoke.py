"""The benchmark suite in smoke mode: toy corpus, one run, every reader runs and pixels match.

Not timed: this only proves the suite works end to end (corpus written by GDAL, range server,
one subprocess per reader, pixel checks against rasterio), as ``benchmarks.run --smoke`` in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Readers installed in the project's venv (the test and bench extras); aiocogeo lives in its own.
MAIN_READERS = ["cloudroi", "cloudroi[multirange]", "rasterio", "tifffile", "async-tiff"]

#: The runs are not timed; their time limits only stop a hang. They share the machine with the
#: other xdist worker (and, on a busy box, everything else): generous limits, and pytest-timeout's
#: per-test limit raised to hold the module fixtures that run them.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Benchmark results" in proc.stdout
    assert (out / "smoke.md").read_text().startswith("## Benchmark results")
    return json.loads((out / "smoke.json").read_text())


def test_every_workload_ran(smoke_report: dict) -> None:
    assert set(smoke_report["workloads"]) == {"W1", "W2", "W3", "W4", "W5"}
    assert "W6" in smoke_report["w6"]


@pytest.mark.parametrize("reader", MAIN_READERS)
def test_reader_runs_and_matches_rasterio(smoke_report: dict, reader: str) -> None:
    for key, summary in smoke_report["workloads"].items():
        row = summary["rows"][reader]
        assert row["error"] is None, f"{key}/{reader}: {row['error']}"
        assert row["pixels_ok"] is True, f"{key}/{reader}: {row['pixels']}"
        assert row["requests"] >= 1, f"{key}/{reader}"
        assert row["bytes"] > 0, f"{key}/{reader}"
        assert row["rss_peak"] > 0, f"{key}/{reader}"
        assert row["wall_median"] > 0, f"{key}/{reader}"


def test_cloudroi_traffic_is_near_the_minimum(smoke_report: dict) -> None:
    for key, summary in smoke_report["workloads"].items():
        row = summary["rows"]["cloudroi"]
        # Every block needed is fetched once, and little else: a loose bound for the toy corpus.
        assert summary["minimum"]["total"] <= row["bytes"] <= 2 * summary["minimum"]["total"], key


def test_multirange_row_sends_one_get_for_the_window(smoke_report: dict) -> None:
    """W1's window spans 3 block rows: 3 GETs by default, 1 multi-range GET with the option."""
    rows = smoke_report["workloads"]["W1"]["rows"]
    assert rows["cloudroi"]["requests"] == 4
    assert rows["cloudroi[multirange]"]["requests"] == 2
    assert (
        rows["cloudroi[multirange]"]["bytes"]
        < 1.1 * smoke_report["workloads"]["W1"]["minimum"]["total"]
    )


def test_aiocogeo_is_shown_not_dropped(smoke_report: dict) -> None:
    for key, summary in smoke_report["workloads"].items():
        row = summary["rows"]["aiocogeo"]
        assert row["error"] is not None or row["pixels"] != "not checked", key


# -- the tile benchmark (benchmarks/tiles.py --smoke) ------------------------------------------


@pytest.fixture(scope="module")
def tile_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """cloudroi serve and TiTiler (uvicorn, 1 worker) side by side: toy corpus, 2 clients."""
    out = tmp_path_factory.mktemp("tiles")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.tiles", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "## Tile benchmark" in proc.stdout
    return json.loads((out / "tiles-smoke.json").read_text())


@pytest.mark.parametrize("reader", ["cloudroi", "titiler"])
def test_tile_servers_answer_png_tiles(tile_report: dict, reader: str) -> None:
    """Every tile of the sequence a 200 256 x 256 PNG, fetched from the range server."""
    files = set(tile_report["files"])
    assert files == {"utm", "merc"}
    assert {key.split("/")[0] for key in tile_report["sequence"]} == files
    (row,) = [r for r in tile_report["rows"] if r["reader"] == reader]
    assert row["concurrency"] == 2
    assert row["tiles"] == len(tile_report["sequence"]) >= 8
    assert row["errors"] == 0, row["first_errors"]
    assert row["tiles_per_s"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["requests_per_tile"] > 0
    assert row["bytes_per_tile"] > 0
    assert row["cpu_ms_per_tile"] > 0


def test_tile_ratios_are_reported(tile_report: dict) -> None:
    (q,) = tile_report["ratios"]
    assert q["concurrency"] == 2
    assert q["tiles_per_s"] > 0
    assert q["p99"] > 0
    assert q["bytes_per_tile"] > 0


def test_cloudroi_tiles_match_titiler_where_both_warp(tile_report: dict) -> None:
    """Reprojected tiles (UTM file): TiTiler's tiles come from GDAL's warper, as cloudroi's."""
    ag = tile_report["agreement"]["cloudroi"]
    assert ag["all"]["tiles"] == len(tile_report["sequence"])
    assert ag["utm"]["identical"] >= 0.995, ag["utm"]
    assert ag["utm"]["alpha_identical"] >= 0.995, ag["utm"]
    assert ag["merc"]["alpha_identical"] >= 0.995, ag["merc"]


def test_cloudroi_tiles_match_gdal_warper_on_every_file(tile_report: dict) -> None:
    """Same-CRS tiles (3857 file): TiTiler decimates with RasterIO there, so cloudroi is held
    to rio-tiler's tile through a WarpedVRT instead."""
    ag = tile_report["warp_reference"]["cloudroi"]
    for name in ("utm", "merc"):
        assert ag[name]["tiles"] > 0, name
        assert ag[name]["identical"] >= 0.995, ag[name]
        assert ag[name]["alpha_identical"] >= 0.995, ag[name]
