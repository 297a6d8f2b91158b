"""The bundled sample image: a synthetic 4096 x 4096 float32 elevation model, as a COG.

Generated deterministically (no download, no GDAL) with ``cloudroi.cog.write_cog``: DEFLATE
with the floating-point predictor, 256-pixel tiles, four overview levels, nodata -9999 over the
"sea", georeferenced in UTM 33N (EPSG:32633) at 10 m. Used by the demo, the service's default
allowlist and tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .cog import write_cog

__all__ = ["SAMPLE_NAME", "default_sample_path", "ensure_sample", "sample_cog_bytes", "sample_dem"]

SAMPLE_NAME = "sample-dem.tif"
SAMPLE_SIZE = 4096
SAMPLE_NODATA = -9999.0
SAMPLE_EPSG = 32633
SAMPLE_TRANSFORM = (500000.0, 10.0, 0.0, 6100000.0, 0.0, -10.0)


def sample_dem(size: int = SAMPLE_SIZE, seed: int = 7) -> npt.NDArray[np.float32]:
    """Smooth hills from a few random sinusoids, a ridge, and a 'sea' of nodata in one corner.

    Heights are quantized to 0.25 m, as surveyed DEMs are, which also keeps the file small.
    """
    rng = np.random.default_rng(seed)
    t = (np.arange(size, dtype=np.float64) / size)[:, np.newaxis]  # column vector
    z = np.zeros((size, size), dtype=np.float64)
    for octave in range(5):
        f = 2.0 ** (octave + 1)
        for _ in range(3):
            kx, ky = rng.normal(size=2) * f
            phase = rng.uniform(0, 2 * np.pi)
            # sin(a + b) = sin a cos b + cos a sin b: two outer products instead of size**2 sines.
            a = 2 * np.pi * ky * t + phase  # rows
            b = 2 * np.pi * kx * t.T  # columns
            z += (400.0 / f) * (np.sin(a) @ np.cos(b) + np.cos(a) @ np.sin(b))
    ridge = np.exp(-(((t.T - 0.6) * 4) ** 2))
    z += 900.0 * ridge
    z -= z.min()
    out = (np.round(z * 4) / 4).astype(np.float32)
    rows, cols = np.ogrid[0:size, 0:size]
    out[(rows + cols) < 0.35 * size] = SAMPLE_NODATA
    return out


def sample_cog_bytes(size: int = SAMPLE_SIZE) -> bytes:
    """The sample COG's bytes (a few seconds to build at 4096 x 4096)."""
    return write_cog(
        sample_dem(size),
        tile=256,
        compression="deflate",
        predictor=3,
        nodata=SAMPLE_NODATA,
        epsg=SAMPLE_EPSG,
        transform=SAMPLE_TRANSFORM,
    )


def default_sample_path() -> Path:
    """Where the sample lives: $CLOUDROI_SAMPLE_DIR, else ~/.cache/cloudroi."""
    base = os.environ.get("CLOUDROI_SAMPLE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cloudroi"
    )
    return Path(base) / SAMPLE_NAME


def ensure_sample(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the sample COG to ``path`` (default ``default_sample_path()``) unless it exists."""
    target = Path(path) if path is not None else default_sample_path()
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(sample_cog_bytes())
        os.replace(tmp, target)
    return target
