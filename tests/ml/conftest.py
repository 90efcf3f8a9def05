"""Fixtures of the model tests: a small product with a planted rule, as marts in DuckDB."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ml_world import World, make_world


@pytest.fixture(scope="session")
def world() -> World:
    return make_world(users=2000, seed=7)


def write_marts(world: World, path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists marts")
        for name, frame in (
            ("fct_user_features", world.features),
            ("fct_conversion_labels", world.labels),
            ("fct_user_journeys", world.journeys),
            ("dim_users", world.users),
        ):
            con.register("_frame", frame)
            con.execute(f"create or replace table marts.{name} as select * from _frame")
            con.unregister("_frame")
    return path


@pytest.fixture
def warehouse(world: World, tmp_path: Path) -> Path:
    return write_marts(world, tmp_path / "warehouse.duckdb")
