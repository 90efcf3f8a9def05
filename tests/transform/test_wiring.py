"""The dbt arguments the Dagster assets build, and the asset graph they declare."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from orchestration import transform
from orchestration.settings import Settings
from orchestration.transform.settings import TransformSettings


def test_vars_come_from_the_window_and_gap_settings(nextbest_home, monkeypatch):
    monkeypatch.setenv("NEXTBEST_CONVERSION_WINDOW_DAYS", "14")
    monkeypatch.setenv("NEXTBEST_SESSION_GAP_MINUTES", "45")
    monkeypatch.delenv("NEXTBEST_AS_OF", raising=False)
    assert transform.dbt_vars(Settings(), TransformSettings()) == {
        "conversion_window_days": 14,
        "session_gap_minutes": 45,
        "snapshot_after_every_event": False,
    }


def test_as_of_is_passed_only_when_set(nextbest_home, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", "1700000000")
    assert transform.dbt_vars(Settings(), TransformSettings())["as_of"] == 1_700_000_000


def test_build_arguments_carry_the_vars_as_json_and_the_threads(nextbest_home, monkeypatch):
    monkeypatch.setenv("NEXTBEST_DBT_THREADS", "1")
    args = transform.dbt_build_args(Settings(), TransformSettings(), select="fct_sessions+")
    assert args[0] == "build"
    assert json.loads(args[args.index("--vars") + 1])["conversion_window_days"] == 7
    assert args[args.index("--threads") + 1] == "1"
    assert args[-2:] == ["--select", "fct_sessions+"]


def test_dbt_writes_the_warehouse_of_the_settings(nextbest_home):
    assert transform.dbt_env(Settings()) == {
        "NEXTBEST_WAREHOUSE": str(nextbest_home.resolve() / "warehouse.duckdb")
    }


@pytest.fixture(scope="module")
def dbt_asset() -> dg.AssetsDefinition:
    (asset,) = transform.defs().assets
    return asset


def test_every_mart_is_an_asset_of_the_transform_group(dbt_asset):
    marts = ["dim_users", "fct_user_journeys", "fct_sessions", "fct_conversion_labels"]
    marts.append("fct_user_features")
    for name in marts:
        key = dg.AssetKey([name])
        assert key in dbt_asset.keys
        assert dbt_asset.group_names_by_key[key] == "transform"


def test_sources_are_the_ingestion_assets(dbt_asset):
    upstream = {key for key in dbt_asset.dependency_keys if key not in dbt_asset.keys}
    expected = {
        "intercom_contacts", "intercom_companies", "intercom_contact_companies",
        "intercom_events", "stripe_customers", "stripe_subscriptions", "stripe_invoices",
        "stripe_charges", "stripe_refunds",
    }  # fmt: skip
    assert upstream == {dg.AssetKey(["raw", table]) for table in expected}


def test_dbt_tests_are_asset_checks(dbt_asset):
    checks = {(spec.asset_key, spec.name) for spec in dbt_asset.check_specs}
    assert (dg.AssetKey(["fct_user_features"]), "unique_fct_user_features_snapshot_id") in checks
    assert (
        dg.AssetKey(["fct_user_features"]),
        "no_snapshot_sees_a_later_event_fct_user_features_",
    ) in checks


@pytest.mark.parametrize(
    ("dbt_vars", "message"),
    [
        # A window of 0 used to compile an empty `day_numbers` CTE, failing in DuckDB.
        ({"conversion_window_days": 0}, "var conversion_window_days = 0 is not a whole number"),
        ({"session_gap_minutes": "x"}, 'var session_gap_minutes = "x" is not a whole number'),
        # 1.7e12: a 2023 time in milliseconds.
        ({"as_of": 1_700_000_000_000}, "var as_of = 1700000000000 is not a whole number"),
    ],
)
def test_dbt_refuses_a_bad_var_naming_it(tmp_path, dbt_vars, message):
    from tests.transform.conftest import run_dbt

    with pytest.raises(AssertionError, match=message):
        run_dbt(tmp_path / "warehouse.duckdb", tmp_path, "parse", dbt_vars=dbt_vars)
