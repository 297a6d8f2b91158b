"""The hedging benchmark in smoke mode (``benchmarks.hedging --smoke``, as CI runs it): W1 and
the service's /region, hedging off and on, every answer's pixels exact.

Not timed: a dozen reads per side prove the harness (long-tail upstream, two Contexts, two
service processes, /metrics counters), not the figures, which the full run gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_hedging_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "hedging.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.hedging", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| W1 | on |" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"W1", "/region"}
    assert report["tail"]["slow"] >= 1  # the long tail was there
    for key, wl in report["workloads"].items():
        off, on = wl["off"], wl["on"]
        for side in (off, on):
            assert side["errors"] == 0, key  # every answer 200 with exact pixels
            assert side["runs"] >= 10, key
            assert side["requests"] >= side["runs"], key
        assert off["hedged"] == off["hedge_wins"] == 0, key
        assert on["hedge_wins"] <= on["hedged"], key
        assert on["extra_share"] <= 0.05, key  # the budget holds however the tail fell
        assert set(wl["verdict"]) >= {"p99_ratio", "p99_ok", "extra_ok", "p50_ok"}
