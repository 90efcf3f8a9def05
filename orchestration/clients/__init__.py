"""Plain-Python clients of the outside APIs (no Dagster): Intercom over httpx, Stripe's SDK.

Each client owns timeouts, retries, pagination and rate limiting, so callers read like the
story. `orchestration.resources` wraps them as Dagster resources.
"""
