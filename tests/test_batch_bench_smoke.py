"""The batch benchmarks (benchmarks/batch.py) in smoke mode: toy corpus, one run on a
2-process Dask cluster, cloudroi and one other reader per benchmark; every reader runs and gives
the reference's pixels, and cloudroi's traffic stays near the minimum. Not timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("distributed")
    pytest.importorskip("stackstac")
    pytest.importorskip("rioxarray")
    out = tmp_path_factory.mktemp("batch-bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch", "--smoke", "--threads", "2", "--out", str(out),
         "--readers", "cloudroi,rioxarray,stackstac,cloudroi:pieces,cloudroi:composite"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "### B1" in proc.stdout
    assert "### B2" in proc.stdout
    return json.loads((out / "batch-smoke.json").read_text())


@pytest.mark.parametrize(("key", "other"), [("B1", "rioxarray"), ("B2", "stackstac")])
def test_readers_run_and_agree(report: dict, key: str, other: str) -> None:
    rows = report[key]["rows"]
    for name in ("cloudroi", other):
        row = rows[name]
        assert row["error"] is None, f"{key}/{name}: {row['error']}"
        assert row["pixels"] == "identical", f"{key}/{name}: {row['pixels']}"
        assert row["requests"] >= 1
        assert row["bytes"] > 0
        assert len(row["rss"]) == 2
        assert all(v > 0 for v in row["rss"])
        assert row["wall"] > 0


@pytest.mark.parametrize("key", ["B1", "B2"])
def test_cloudroi_opens_each_file_once_and_fetches_little_more_than_needed(
    report: dict, key: str
) -> None:
    row = report[key]["rows"]["cloudroi"]
    files = 8 if key == "B1" else 4
    # tasks are grouped by file: each file opened by one worker process, once
    assert sum(row["opens"]) == files
    assert row["bytes"] <= 1.2 * report[key]["minimum"]
    other = report[key]["rows"]["rioxarray" if key == "B1" else "stackstac"]
    assert row["requests"] <= other["requests"]


@pytest.mark.parametrize("name", ["cloudroi:pieces", "cloudroi:composite"])
def test_b2_per_piece_reads_give_the_same_mean_from_each_file_read_once(
    report: dict, name: str
) -> None:
    rows = report["B2"]["rows"]
    row = rows[name]
    assert row["error"] is None, row["error"]
    assert row["pixels"] == "identical"
    # every item of a piece in one task (time-chunked stack, or the composite's reduction):
    # each file opened at most once per worker process
    assert sum(row["opens"]) <= 2 * 4
    assert row["bytes"] <= 1.2 * report["B2"]["minimum"]
    assert row["requests"] <= rows["cloudroi"]["requests"]
