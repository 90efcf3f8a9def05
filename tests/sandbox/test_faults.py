"""Fault profiles produce the samples of the failure-mode catalogue (1-4, 7, 8, 23) and more."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from sandbox.faults import RateLimiter
from tests.sandbox.conftest import intercom_client


def _scroll(client: httpx.Client, param: str | None = None) -> httpx.Response:
    return client.get("/companies/scroll", params={"scroll_param": param} if param else {})


def test_fm1_an_expired_scroll_answers_404_and_blocks_a_new_one_until_idle(fresh_shop):
    fresh_shop.admin.set_faults("scroll_expiry", scroll_idle_seconds=1.0)
    client = intercom_client(fresh_shop)
    first = _scroll(client)
    assert first.status_code == 200 and len(first.json()["data"]) == 50
    param = first.json()["scroll_param"]
    assert _scroll(client, param).status_code == 404
    blocked = _scroll(client)
    assert blocked.status_code == 400
    assert blocked.json()["errors"][0]["code"] == "scroll_exists"
    time.sleep(1.1)
    assert _scroll(client).status_code == 200


def test_fm2_the_same_scroll_param_on_every_page_and_an_empty_last_page(fresh_shop):
    fresh_shop.store.companies[:] = fresh_shop.store.companies[:3]
    import sandbox.app as app

    client = intercom_client(fresh_shop)
    size = app.SCROLL_PAGE_SIZE
    app.SCROLL_PAGE_SIZE = 2
    try:
        pages = [_scroll(client).json()]
        while pages[-1]["data"]:
            pages.append(_scroll(client, pages[-1]["scroll_param"]).json())
    finally:
        app.SCROLL_PAGE_SIZE = size
    assert [len(p["data"]) for p in pages] == [2, 1, 0]
    assert len({p["scroll_param"] for p in pages}) == 1


def test_fm3_no_companies_gives_one_empty_page(fresh_shop):
    fresh_shop.admin.set_faults("no_companies")
    client = intercom_client(fresh_shop)
    body = _scroll(client).json()
    assert body["data"] == [] and body["scroll_param"]
    # The empty page closed the scroll: a new one may start at once.
    assert _scroll(client).status_code == 200


def test_fm4_a_5xx_mid_scroll_loses_the_scroll(fresh_shop):
    fresh_shop.store.companies[:] = fresh_shop.store.companies[:60]
    fresh_shop.admin.set_faults("scroll_5xx")
    client = intercom_client(fresh_shop)
    first = _scroll(client).json()
    assert len(first["data"]) == 50
    assert _scroll(client, first["scroll_param"]).status_code == 500
    retry = _scroll(client, first["scroll_param"])
    assert retry.status_code == 200 and retry.json()["data"] == []
    # Restarting from the start delivers every company.
    fresh_shop.admin.set_faults(None)
    seen, param = [], None
    while True:
        page = _scroll(client, param).json()
        if not page["data"]:
            break
        seen += [c["id"] for c in page["data"]]
        param = page["scroll_param"]
    assert len(set(seen)) == 60


def test_fm7_rate_limit_headers_reset_ahead_past_and_missing(fresh_shop):
    fresh_shop.admin.set_faults("rate_limit_headers")
    client = intercom_client(fresh_shop)
    answers = [client.get("/contacts", params={"per_page": 1}) for _ in range(4)]
    now = time.time()
    assert [a.status_code for a in answers] == [200, 429, 429, 200]
    assert answers[0].headers["X-RateLimit-Remaining"] == "1"
    assert 5 <= int(answers[0].headers["X-RateLimit-Reset"]) - now <= 8
    assert int(answers[1].headers["X-RateLimit-Reset"]) < now
    assert "X-RateLimit-Reset" not in answers[2].headers
    assert answers[1].json()["errors"][0]["code"] == "rate_limit_exceeded"


def test_fm8_an_html_503_then_a_500_error_list_then_success(fresh_shop):
    fresh_shop.admin.set_faults("server_errors")
    client = intercom_client(fresh_shop)
    answers = [client.get("/contacts", params={"per_page": 1}) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 500, 200]
    assert answers[0].headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        answers[0].json()
    assert answers[1].json()["type"] == "error.list"


def test_fm23_stripe_retry_classes_then_success(fresh_shop):
    fresh_shop.admin.set_faults("stripe_retry_classes")
    client = stripe.StripeClient(
        fresh_shop.stripe_key, base_addresses={"api": fresh_shop.stripe_url}
    )
    errors = []
    for _ in range(3):
        with pytest.raises(stripe.StripeError) as caught:
            client.v1.customers.list(params={"limit": 1})
        errors.append(caught.value)
    assert [e.http_status for e in errors] == [429, 429, 500]
    assert [e.json_body["error"]["code"] for e in errors[:2]] == ["lock_timeout", "rate_limit"]
    assert errors[0].headers["Stripe-Should-Retry"] == "true"
    assert errors[1].headers["Retry-After"] == "2"
    assert isinstance(errors[2], stripe.APIError)
    assert len(client.v1.customers.list(params={"limit": 1}).data) == 1


def test_a_tight_rate_limit_answers_429_with_the_window_headers(fresh_shop):
    # Align to the start of a 10-second window so the burst falls in one window.
    time.sleep(10 - time.time() % 10 + 0.05)
    fresh_shop.admin.set_faults("tight_rate_limit")
    client = intercom_client(fresh_shop)
    codes = [client.get("/contacts", params={"per_page": 1}).status_code for _ in range(12)]
    # 60 a minute is 10 a 10-second window.
    assert codes == [200] * 10 + [429] * 2


def test_the_limiter_counts_fixed_windows():
    limiter = RateLimiter.per_minute(60)
    results = [limiter.take(now=1000.0 + k * 0.1) for k in range(11)]
    assert [r[0] for r in results] == [True] * 10 + [False]
    assert results[0][1:] == (10, 9, 1010)
    assert limiter.take(now=1010.0)[0]


def test_duplicates_repeat_the_last_contact_of_the_previous_page(fresh_shop):
    fresh_shop.admin.set_faults("duplicates")
    client = intercom_client(fresh_shop)
    first = client.get("/contacts", params={"per_page": 3}).json()
    second = client.get(
        "/contacts",
        params={"per_page": 3, "starting_after": first["pages"]["next"]["starting_after"]},
    ).json()
    assert second["data"][0]["id"] == first["data"][-1]["id"]


def test_churn_between_syncs_merges_archives_and_deletes(fresh_shop):
    fresh_shop.admin.set_faults("churn")
    client = intercom_client(fresh_shop)
    before = client.get("/contacts", params={"per_page": 1}).json()["total_count"]
    after = client.get("/contacts", params={"per_page": 1}).json()["total_count"]
    kinds = [m["kind"] for m in fresh_shop.admin.mutations()]
    assert kinds == ["merged", "archived", "deleted", "customer_deleted"]
    assert after == before - 3
    merged = fresh_shop.admin.mutations()[0]
    assert client.get(f"/contacts/{merged['lead']}").status_code == 404
    customer = fresh_shop.admin.mutations()[3]["customer"]
    stripe_client = stripe.StripeClient(
        fresh_shop.stripe_key, base_addresses={"api": fresh_shop.stripe_url}
    )
    assert stripe_client.v1.customers.retrieve(customer).to_dict()["deleted"] is True


def test_live_writes_touch_contacts_already_listed(fresh_shop):
    fresh_shop.admin.set_faults("live_writes")
    client = intercom_client(fresh_shop)
    first = client.get("/contacts", params={"per_page": 10}).json()
    listed_at = {c["id"]: c["updated_at"] for c in first["data"]}
    client.get(
        "/contacts",
        params={"per_page": 10, "starting_after": first["pages"]["next"]["starting_after"]},
    )
    touched = fresh_shop.admin.mutations()[0]["contacts"]
    for contact_id in touched:
        assert contact_id in listed_at
        now = client.get(f"/contacts/{contact_id}").json()
        assert now["updated_at"] > listed_at[contact_id]
