"""The stretch of a rendering asked for without ``rescale``: the object's default stretch
(``cloudroi.region.stretch``: each band's 2nd..98th percentile, computed once per object version
and bands and shared by every request), so that neighbouring tiles and regions of one image get
the same contrast. Its statistics read is held to the service's limits like ``/statistics``:
output pixels, block size and memory budget. When the service cannot afford it (413), or when a
band has no valid pixel, each rendering stretches itself as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import LimitExceededError
from ..image import Image
from ..outputs import CONTENT_TYPES, RENDERED
from ..region import Encoded, Expression, RegionPlan, RequestBytes
from ..region.stretch import Compute, Stretch, colours_raw_values, default_rescale
from .answers import check_blocks, check_pixels, holding
from .messages import CoreResponse
from .problems import Problem
from .state import ServiceState

__all__ = ["RESCALE_HEADER", "Stretch", "default_stretch", "report_stretch"]

RESCALE_HEADER = "X-Cloudroi-Rescale"
_IMAGES = frozenset(CONTENT_TYPES[f] for f in RENDERED)


async def default_stretch(
    state: ServiceState,
    img: Image,
    bands: Sequence[int] | None,
    *,
    nodata: float | int | None = None,
    rescale: object = None,
    colormap: object = False,
    expression: Expression | None = None,
) -> Stretch | None:
    """The stretch a rendering of ``bands`` (or of ``expression``'s outputs) uses when no
    ``rescale`` is given; None when one is, for uint8 data (shown as it is; not an expression's
    float outputs), a colormap of values (``colormap``: see ``colours_raw_values``) and when
    the default stretch is not available."""
    if rescale or (img.dtype == np.uint8 and expression is None):
        return None
    if colours_raw_values(img, bands, colormap, expression):
        return None
    cfg = state.config

    async def guard(plan: RegionPlan, need: RequestBytes, compute: Compute) -> Stretch | None:
        check_pixels(state, plan.width, plan.height)
        check_blocks(state, img)
        return await holding(state, need, compute)

    try:
        return await default_rescale(
            img,
            bands,
            nodata=nodata,
            max_tiles=cfg.max_tiles,
            max_bytes=cfg.max_fetch_bytes,
            guard=guard,
            expression=expression,
        )
    except LimitExceededError:
        return None
    except Problem as exc:
        if exc.status == 413:
            return None
        raise


def report_stretch(resp: CoreResponse, encoded: Encoded, stretch: Stretch | None) -> CoreResponse:
    """Name the default stretch a rendering used in ``X-Cloudroi-Rescale``: ``low,high`` when
    every band shares it, else one ``low,high`` per band separated by ``;``."""
    if stretch is None or not encoded.any_valid or encoded.media_type not in _IMAGES:
        return resp
    pairs = [f"{lo:.17g},{hi:.17g}" for lo, hi in stretch]
    resp.headers[RESCALE_HEADER] = pairs[0] if len(set(pairs)) == 1 else ";".join(pairs)
    return resp
