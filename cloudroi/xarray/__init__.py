"""cloudroi for xarray and Dask.

``cloudroi.xarray.runtime`` (no xarray needed): one background event loop, one shared Context
and a cache of opened Images per process, for synchronous and multi-threaded callers (Dask
tasks, cloudroi's synchronous helpers). ``cloudroi.xarray.backend``: the ``engine="cloudroi"``
xarray backend (needs ``pip install 'cloudroi[xarray]'``).

Importing this package does not import xarray.
"""

from __future__ import annotations
