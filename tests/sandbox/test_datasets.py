"""Datasets mapped onto the APIs: counts checked against the raw files read another way."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import stripe

from sandbox.datasets import (
    DATASETS_DIR,
    DatasetError,
    load_events_file,
    load_simple_shop,
    simple_shop_csv,
)
from sandbox.mapping import build_store
from sandbox.runner import running_sandbox


def _paying_customers(sb) -> set[str]:
    """Customers with a paid, non-zero invoice, read through stripe-python."""
    client = stripe.StripeClient(sb.stripe_key, base_addresses={"api": sb.stripe_url})
    listed = {c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()}
    paid = {
        i.customer
        for i in client.v1.invoices.list(params={"limit": 100, "status": "paid"}).auto_paging_iter()
        if i.amount_paid > 0
    }
    return listed & paid


def test_simple_shop_loads_every_user_and_event_and_its_payers_less_the_dirt(shop, cache_dir):
    with open(simple_shop_csv(cache_dir), newline="") as handle:
        rows = list(csv.DictReader(handle))
    payers = {r["user_id"] for r in rows if r["event"] == "payment_done"}
    assert (len(rows), len({r["user_id"] for r in rows}), len(payers)) == (32283, 3751, 653)
    facts = shop.admin.facts()
    assert (facts["contacts"], facts["events"]) == (3751, 32283)
    dirt = shop.admin.dirt()
    deleted = [d for d in dirt if d["kind"] == "deleted_customer"]
    # Deleting a customer is the only dirt that removes a payer from Stripe's lists.
    assert len(deleted) == round(653 * 0.005) == 3
    assert len(_paying_customers(shop)) == len(payers) - len(deleted)
    kinds = {d["kind"] for d in dirt}
    assert kinds == {
        "lead",
        "no_email",
        "shared_email",
        "email_only_customer",
        "trial_invoice",
        "trial_only_customer",
        "refunded_charge",
        "zero_decimal_currency",
        "deleted_customer",
        "legacy_invoice",
    }
    leads = sum(1 for d in dirt if d["kind"] == "lead")
    assert leads == round((3751 - 653) * 0.02) == facts["leads"]


def test_without_dirt_every_payer_is_a_paying_customer_and_nothing_is_reported(cache_dir):
    with running_sandbox("simple_shop", dirt=False, cache_dir=cache_dir) as sb:
        with open(simple_shop_csv(cache_dir), newline="") as handle:
            payers = {r["user_id"] for r in csv.DictReader(handle) if r["event"] == "payment_done"}
        assert sb.admin.dirt() == []
        assert len(_paying_customers(sb)) == len(payers) == 653
        assert sb.admin.facts()["leads"] == 0


def test_mobile_onboarding_maps_passed_users_to_customers():
    with gzip.open(DATASETS_DIR / "mobile_onboarding_2018" / "events.csv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle))
    passed = {r["user_pseudo_id"] for r in rows if r["event_name"] == "passed"}
    with running_sandbox("mobile_onboarding_2018", dirt=False) as sb:
        facts = sb.admin.facts()
        assert (
            (facts["contacts"], facts["events"])
            == (4139, 30943)
            == (
                len({r["user_pseudo_id"] for r in rows}),
                len(rows),
            )
        )
        assert facts["conversion_event"] == "passed"
        assert facts["customers_with_paid_invoice"] == len(passed) == 2497


def test_an_events_file_with_other_column_names_and_milliseconds(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text(
        "distinct_id,name,time\n"
        "a,signup,1700000000000\n"
        "a,paid,1700000100000\n"
        "b,signup,1700000200000\n"
    )
    with running_sandbox(
        "events_file",
        events_file=path,
        conversion_event="paid",
        column_map={"distinct_id": "user_id", "name": "event", "time": "timestamp"},
        dirt=False,
        event_window_days=0,
    ) as sb:
        facts = sb.admin.facts()
        assert (facts["contacts"], facts["events"], facts["customers_with_paid_invoice"]) == (
            2,
            3,
            1,
        )
        i = sb.store.external_index["a"]
        assert int(sb.store.contacts.signed_up_at[i]) == 1_700_000_000
        invoice = sb.store.stripe["invoices"].objects[0]
        assert invoice["status_transitions"]["paid_at"] == 1_700_000_100


def test_an_events_file_sets_a_bad_row_aside_with_its_line(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("user_id,event,timestamp\na,paid,2024-01-01T00:00:00Z\nb,paid,yesterday\n")
    loaded = load_events_file(path, "paid")
    assert loaded.events["user_id"].tolist() == ["a"]
    assert [(r.line, r.reason.split(" is ")[0]) for r in loaded.rejected] == [
        (3, "timestamp 'yesterday'")
    ]
    with pytest.raises(DatasetError, match="never occurs"):
        load_events_file(_ok(tmp_path), "payment")


def _ok(tmp_path: Path) -> Path:
    path = tmp_path / "ok.csv"
    path.write_text("user_id,event,timestamp\na,paid,1700000000\n")
    return path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_email_dirt_leaves_every_email_only_customer_one_contact_to_link_to(cache_dir, seed):
    # An e-mail-only customer links to its user by that address alone: if the address were
    # taken away or shared, the payment would belong to no one without the dirt saying so.
    store = build_store(load_simple_shop(cache_dir), dirt=True, seed=seed)
    holders: dict[str, list[int]] = {}
    for i, email in enumerate(store.contacts.emails):
        if email:
            holders.setdefault(email.strip().lower(), []).append(i)
    kinds = [d["kind"] for d in store.dirt]
    assert kinds.count("shared_email") and kinds.count("no_email")
    email_only = [d for d in store.dirt if d["kind"] == "email_only_customer"]
    assert len(email_only) == round(653 * 0.02) == 13
    for d in email_only:
        address = store.stripe["customers"].get(d["id"])["email"].strip().lower()
        owners = holders.get(address, [])
        assert [store.contacts.external_ids[i] for i in owners] == [d["user_id"]], address
