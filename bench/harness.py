"""Runs named benchmarks, prints a table of figures against their peers and writes JSON.

A benchmark is a function registered with `@benchmark`; it returns `Figure`s, each a value of
ours and the value of a peer measured in the same run on the same machine, so the ratio means
something even on a busy or slow machine.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its peer.

    Attributes:
        figure: What was measured, e.g. "dbt build seconds".
        unit: The unit of `value` and `peer_value`.
        value: Our value.
        peer: What the peer is, e.g. "pandas".
        peer_value: The peer's value, or None when the figure stands against a target instead.
        better: Whether a lower or a higher value is better.
        note: Anything a reader needs to interpret the figure (sizes, targets).
    """

    figure: str
    unit: str
    value: float
    peer: str = ""
    peer_value: float | None = None
    better: Better = "lower"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Our value divided by the peer's."""
        if self.peer_value in (None, 0):
            return None
        return self.value / self.peer_value

    @property
    def advantage(self) -> float | None:
        """How many times better than the peer we are (above 1 means better)."""
        ratio = self.ratio
        if ratio in (None, 0):
            return None
        return 1 / ratio if self.better == "lower" else ratio


@dataclass
class Benchmark:
    """A registered benchmark."""

    name: str
    description: str
    run: Callable[[], list[Figure]]
    tags: list[str] = field(default_factory=list)


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, description: str) -> Callable[[Callable[[], list[Figure]]], Callable]:
    """Register a function returning `Figure`s as the benchmark `name`."""

    def register(fn: Callable[[], list[Figure]]) -> Callable[[], list[Figure]]:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(name=name, description=description, run=fn)
        return fn

    return register


def discover() -> dict[str, Benchmark]:
    """Import every module of `bench.benchmarks` so their benchmarks register."""
    package = importlib.import_module("bench.benchmarks")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"bench.benchmarks.{module.name}")
    return REGISTRY


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(names: list[str] | None, out: Path) -> list[dict[str, object]]:
    """Run the named benchmarks (all when `names` is empty) and write their figures as JSON.

    Returns:
        One record per figure, as written to `out`.

    Raises:
        KeyError: A name that is not a registered benchmark.
    """
    registry = discover()
    chosen = names or sorted(registry)
    unknown = [name for name in chosen if name not in registry]
    if unknown:
        raise KeyError(f"unknown benchmark(s) {unknown}; known: {sorted(registry)}")
    records: list[dict[str, object]] = []
    host = machine()
    for name in chosen:
        started = time.perf_counter()
        figures = registry[name].run()
        seconds = time.perf_counter() - started
        for fig in figures:
            record = asdict(fig) | {
                "benchmark": name,
                "ratio": fig.ratio,
                "advantage": fig.advantage,
                "machine_cores": host["cores"],
                "benchmark_seconds": round(seconds, 3),
            }
            records.append(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host,
        "figures": records,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return records
