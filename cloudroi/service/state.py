"""What every request of the service shares: configuration, allowlist, API keys, one Context
(its one HTTP session guarded at connect time, caches, decode pool), metrics, the memory budget
and the admission counter.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp

from ..context import Context, ContextOptions
from ..read.hedge import HedgePolicy
from ..region.warmup import warm_up
from .budget import MemoryBudget
from .config import ServiceConfig
from .metrics import Metrics
from .problems import Problem, bad_request
from .security import ApiKeys, BadSourceError, SourcePolicy, guarded_connector, redirect_trace

__all__ = ["ServiceState", "guarded_context"]


def guarded_context(
    policy: SourcePolicy,
    options: ContextOptions | None = None,
    *,
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> Context:
    """A Context whose one HTTP session answers to ``policy``: every connection passes the
    address guard at connect time, every redirect target the allowlist before it is requested
    (cloudroi's sources follow redirects themselves; a trace hook judges any other use)."""
    options = options or ContextOptions(trust_env=False)
    return Context(
        options,
        connector_factory=guarded_connector(
            policy.guard, limit=options.max_connections, resolver=resolver
        ),
        trace_configs=[redirect_trace(policy)],
        check_redirect=policy.check_redirect,
    )


def _warm() -> None:
    """The endpoints' modules (imported by their first request otherwise) and the map path."""
    from .core import load_endpoints

    load_endpoints()
    warm_up()


class ServiceState:
    """Create with ``await ServiceState.start(config)``; close with ``await state.close()``."""

    def __init__(
        self, config: ServiceConfig, policy: SourcePolicy, context: Context, metrics: Metrics
    ) -> None:
        self.config = config
        self.policy = policy
        self.context = context
        self.metrics = metrics
        self.api_keys = ApiKeys(config.api_keys)
        self.memory = MemoryBudget(config.memory_budget_bytes)
        self.active = 0
        self._openapi: bytes | None = None

    @classmethod
    async def start(
        cls,
        config: ServiceConfig,
        *,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        warm: bool = True,
    ) -> ServiceState:
        """``resolver`` replaces aiohttp's DNS resolver for upstream HTTP (tests, custom DNS).
        ``warm=False`` skips ``warm_up`` (the Lambda handler: its first request is the one that
        would wait; SnapStart's before-snapshot hook warms up instead)."""
        policy = SourcePolicy(config.effective_sources(), config.allowed_networks)
        options = ContextOptions(
            max_connections=config.max_upstream_connections,
            connect_timeout=config.upstream_connect_timeout,
            read_timeout=config.upstream_read_timeout,
            storage_options=config.storage_options(),
            trust_env=False,
            hedge=HedgePolicy(share=config.hedge_share) if config.hedge else None,
        )
        state = cls(config, policy, guarded_context(policy, options, resolver=resolver), Metrics())
        state._gauges()
        # before the first client: the map path's imports and pyproj's set-up (~0.3-0.8 s once
        # per process) would otherwise land on the first burst of tile requests
        if warm:
            await asyncio.to_thread(_warm)
        return state

    def _gauges(self) -> None:
        cache = self.context.block_cache
        gauges = self.metrics.gauges
        gauges["cloudroi_block_cache_bytes"] = (
            "Bytes held by the block cache.",
            lambda: float(cache.size),
        )
        gauges["cloudroi_block_cache_entries"] = (
            "Blocks held by the block cache.",
            lambda: float(len(cache)),
        )
        gauges["cloudroi_memory_reserved_bytes"] = (
            "Bytes reserved by requests in progress (estimated).",
            lambda: float(self.memory.used),
        )

    async def close(self) -> None:
        await self.context.close()

    async def resolve(self, url: str) -> str:
        """The URL or path to open for a client's ``url``, or a 400/403."""
        try:
            local = self.policy.local_path(url)
            if local is not None:
                real = await asyncio.to_thread(os.path.realpath, local)
                return self.policy.check_local_resolved(url, real).url
            return self.policy.check_remote(url).url
        except BadSourceError as exc:
            raise bad_request(str(exc), code="invalid_url") from exc
        except ValueError as exc:  # e.g. realpath on something the checks above let through
            raise bad_request(f"url is not a usable source: {exc}", code="invalid_url") from exc

    def shed(self, why: str) -> Problem:
        """A 503 for a request the service has no room for now (counted as shed)."""
        self.metrics.shed += 1
        return Problem(
            503,
            "overloaded",
            f"{why}; retry later",
            headers={"Retry-After": str(self.config.retry_after)},
        )

    def openapi_bytes(self) -> bytes:
        if self._openapi is None:
            from .openapi import openapi_document  # its first request: not on every cold start

            self._openapi = json.dumps(openapi_document()).encode()
        return self._openapi
