"""Answers of the sandbox against the vendors' own contracts: Intercom's 2.14 schemas and
stripe-python's objects with the fields of Stripe's fixtures."""

from __future__ import annotations

import json

import pytest
import stripe

from sandbox.stripe_fixtures import SAMPLES
from tests.sandbox.conftest import SCHEMAS, intercom_client


def test_contacts_pages_validate_and_cover_every_contact_once(shop, intercom_schema):
    client = intercom_client(shop)
    seen, params, pages = [], {"per_page": 150}, 0
    while True:
        answer = client.get("/contacts", params=params)
        assert answer.status_code == 200
        body = answer.json()
        if pages < 2:
            intercom_schema(body, "contact_list")
        seen += [c["id"] for c in body["data"]]
        pages += 1
        following = body["pages"].get("next")
        if not following:
            break
        params = {"per_page": 150, "starting_after": following["starting_after"]}
    assert len(seen) == len(set(seen)) == 3751
    assert pages == -(-3751 // 150)
    assert body["total_count"] == 3751


def test_a_contact_carries_every_property_of_the_schema(shop, intercom_schema):
    schema = json.loads(SCHEMAS.read_text())["schemas"]["contact"]
    contact = intercom_client(shop).get("/contacts", params={"per_page": 1}).json()["data"][0]
    assert set(schema["properties"]) <= set(contact)
    again = intercom_client(shop).get(f"/contacts/{contact['id']}").json()
    intercom_schema(again, "contact")
    by_external = intercom_client(shop).get(
        f"/contacts/find_by_external_id/{contact['external_id']}"
    )
    assert by_external.json()["id"] == contact["id"]


def test_search_combines_filters_and_pages_with_the_cursor_in_the_body(shop, intercom_schema):
    store = shop.store
    cut = int(sorted(store.contacts.updated_at)[len(store.contacts) // 2])
    leads_expected = sum(
        1
        for role, updated in zip(store.contacts.roles, store.contacts.updated_at, strict=True)
        if role == "lead" and updated > cut
    )
    users_or_leads = sum(1 for role in store.contacts.roles if role in ("user", "lead"))
    client = intercom_client(shop)
    query = {
        "operator": "AND",
        "value": [
            {"field": "role", "operator": "=", "value": "lead"},
            {"field": "updated_at", "operator": ">", "value": cut},
        ],
    }
    found, body = [], {"query": query, "pagination": {"per_page": 5}}
    while True:
        page = client.post("/contacts/search", json=body).json()
        intercom_schema(page, "contact_list")
        found += [c["id"] for c in page["data"]]
        if "next" not in page["pages"]:
            break
        body["pagination"]["starting_after"] = page["pages"]["next"]["starting_after"]
    assert len(found) == len(set(found)) == leads_expected > 0
    either = {
        "operator": "OR",
        "value": [
            {"field": "role", "operator": "=", "value": "user"},
            {"field": "role", "operator": "=", "value": "lead"},
        ],
    }
    total = client.post("/contacts/search", json={"query": either}).json()["total_count"]
    assert total == users_or_leads == 3751
    bad = client.post(
        "/contacts/search", json={"query": {"field": "shoe_size", "operator": "=", "value": 1}}
    )
    assert bad.status_code == 400
    intercom_schema(bad.json(), "error")


def test_attribute_writes_are_checked_against_their_definitions(fresh_shop, intercom_schema):
    client = intercom_client(fresh_shop)
    created = client.post(
        "/data_attributes",
        json={"name": "next_best_action", "model": "contact", "data_type": "string"},
    )
    assert created.status_code == 200
    intercom_schema(created.json(), "data_attribute")
    duplicate = client.post(
        "/data_attributes",
        json={"name": "next_best_action", "model": "contact", "data_type": "string"},
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["errors"][0]["code"] == "parameter_invalid"
    dotted = client.post(
        "/data_attributes", json={"name": "a.b", "model": "contact", "data_type": "string"}
    )
    assert dotted.status_code == 400
    listing = client.get("/data_attributes", params={"model": "contact"}).json()
    intercom_schema(listing, "data_attribute_list")
    assert "next_best_action" in [a["name"] for a in listing["data"]]
    client.post(
        "/data_attributes", json={"name": "seats", "model": "contact", "data_type": "integer"}
    )

    contact_id = fresh_shop.store.contacts.ids[7]
    good = client.put(
        f"/contacts/{contact_id}", json={"custom_attributes": {"next_best_action": "invite"}}
    )
    assert good.status_code == 200
    assert good.json()["custom_attributes"] == {"next_best_action": "invite"}
    intercom_schema(good.json(), "contact")
    for bad_value in (
        {"unknown_attr": "x"},
        {"seats": "12 seats"},
        {"next_best_action": "x" * 256},
    ):
        answer = client.put(f"/contacts/{contact_id}", json={"custom_attributes": bad_value})
        assert answer.status_code == 400
        intercom_schema(answer.json(), "error")
    writes = fresh_shop.admin.writes()
    assert [w["status"] for w in writes] == [200, 400, 400, 400]
    assert fresh_shop.admin.attributes() == {contact_id: {"next_best_action": "invite"}}


def test_companies_scroll_and_contact_companies_validate(shop, intercom_schema):
    client = intercom_client(shop)
    params, seen, params_seen = {}, [], set()
    while True:
        page = client.get("/companies/scroll", params=params).json()
        intercom_schema(page, "company_scroll")
        params_seen.add(page["scroll_param"])
        if not page["data"]:
            break
        seen += [c["id"] for c in page["data"]]
        params = {"scroll_param": page["scroll_param"]}
    assert len(seen) == len(set(seen)) == len(shop.store.companies) == 300
    assert len(params_seen) == 1
    contact_id = shop.store.contacts.ids[0]
    attached = client.get(f"/contacts/{contact_id}/companies").json()
    intercom_schema(attached, "contact_attached_companies")
    assert attached["companies"][0]["id"] in seen


def test_events_list_newest_first_within_the_window_and_pages_by_url(shop):
    store = shop.store
    # A contact with many events, counted independently from the store's columns.
    counts = store.events.offsets[1:] - store.events.offsets[:-1]
    i = int(counts.argmax())
    start = store.window_start()
    lo, hi = store.events.offsets[i], store.events.offsets[i + 1]
    expected = sorted((int(t) for t in store.events.created_at[lo:hi] if t >= start), reverse=True)
    client = intercom_client(shop)
    answer = client.get(
        "/events",
        params={"type": "user", "intercom_user_id": store.contacts.ids[i], "per_page": 7},
    ).json()
    times = []
    while True:
        assert answer["type"] == "event.list"
        for event in answer["events"]:
            assert set(event) >= {"type", "id", "event_name", "created_at", "user_id", "email"}
            assert event["intercom_user_id"] == store.contacts.ids[i]
        times += [e["created_at"] for e in answer["events"]]
        if not answer["pages"].get("next"):
            break
        answer = client.get(answer["pages"]["next"]).json()
    assert times == expected and len(times) > 7


def test_posted_events_are_accepted_and_duplicates_dropped(fresh_shop):
    client = intercom_client(fresh_shop)
    external = fresh_shop.store.contacts.external_ids[3]
    now = fresh_shop.store.now()
    body = {"event_name": "invited_teammate", "created_at": now, "user_id": external}
    assert client.post("/events", json=body).status_code == 202
    assert client.post("/events", json=body).status_code == 202
    events = client.get("/events", params={"type": "user", "user_id": external}).json()["events"]
    assert [e["event_name"] for e in events].count("invited_teammate") == 1
    assert events[0]["event_name"] == "invited_teammate"


def test_errors_use_each_vendors_body(shop, intercom_schema):
    unauthorised = intercom_client(shop).get("/contacts", headers={"Authorization": "Bearer x"})
    assert unauthorised.status_code == 401
    intercom_schema(unauthorised.json(), "error")
    missing = intercom_client(shop).get("/contacts/nope")
    assert missing.status_code == 404
    intercom_schema(missing.json(), "error")
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient(
            "sk_test_wrong", base_addresses={"api": shop.stripe_url}
        ).v1.customers.list()
    client = stripe.StripeClient(shop.stripe_key, base_addresses={"api": shop.stripe_url})
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.customers.list(params={"limit": 1000})
    assert error.value.http_status == 400


STRIPE_CLASSES = {
    "customers": stripe.Customer,
    "subscriptions": stripe.Subscription,
    "invoices": stripe.Invoice,
    "charges": stripe.Charge,
    "refunds": stripe.Refund,
    "events": stripe.Event,
}
# Fields the sample carries that the API version or the list answers leave out, by object.
NOT_CARRIED = {"invoice": {"subscription", "paid", "charge"}, "charge": {"refunds"}}


@pytest.mark.parametrize("kind", list(STRIPE_CLASSES))
def test_stripe_lists_parse_as_stripe_objects_with_the_fixture_fields(shop, kind):
    samples = json.loads(SAMPLES.read_text())
    client = stripe.StripeClient(shop.stripe_key, base_addresses={"api": shop.stripe_url})
    page = getattr(client.v1, kind).list(params={"limit": 3})
    assert len(page.data) == 3 and page.has_more
    for obj in page.data:
        assert isinstance(obj, STRIPE_CLASSES[kind])
        name = obj.object
        expected = set(samples[name]) - NOT_CARRIED.get(name, set())
        if name == "invoice" and "parent" not in obj.to_dict():
            # A legacy invoice (dirt `legacy_invoice`): the old fields instead of `parent`.
            expected = expected - {"parent"} | NOT_CARRIED["invoice"]
        assert expected <= set(obj.to_dict())
    created = [o.created for o in page.data]
    assert created == sorted(created, reverse=True)


def test_stripe_pagination_and_created_filters_agree_with_the_store(shop):
    client = stripe.StripeClient(shop.stripe_key, base_addresses={"api": shop.stripe_url})
    invoices = shop.store.stripe["invoices"].objects
    cut = invoices[len(invoices) // 2]["created"]
    expected = {o["id"] for o in invoices if o["created"] >= cut}
    got = [
        o.id
        for o in client.v1.invoices.list(
            params={"limit": 100, "created": {"gte": cut}}
        ).auto_paging_iter()
    ]
    assert len(got) == len(set(got)) and set(got) == expected
    first = client.v1.invoices.list(params={"limit": 4})
    second = client.v1.invoices.list(params={"limit": 4, "starting_after": first.data[-1].id})
    back = client.v1.invoices.list(params={"limit": 4, "ending_before": second.data[0].id})
    assert [o.id for o in back.data] == [o.id for o in first.data]
    paid = client.v1.invoices.list(params={"limit": 1}).data[0]
    assert paid.status == "paid" and paid.status_transitions.paid_at == paid.created
    # The newest invoice may be a legacy one (dirt `legacy_invoice`): the link moved in 2025.
    shape = paid.to_dict()
    link = shape["parent"]["subscription_details"] if "parent" in shape else shape
    assert link["subscription"].startswith("sub_")


def test_canceled_subscriptions_hide_unless_status_all(fresh_shop):
    client = stripe.StripeClient(
        fresh_shop.stripe_key, base_addresses={"api": fresh_shop.stripe_url}
    )
    subscription = fresh_shop.store.stripe["subscriptions"].objects[0]["id"]
    event = fresh_shop.admin.set_subscription_status(subscription, "canceled")
    assert event["type"] == "customer.subscription.deleted"
    customer = fresh_shop.store.stripe["subscriptions"].objects[0]["customer"]
    default = client.v1.subscriptions.list(params={"customer": customer}).data
    everything = client.v1.subscriptions.list(params={"customer": customer, "status": "all"}).data
    assert subscription not in {s.id for s in default}
    assert subscription in {s.id for s in everything}
    latest = client.v1.events.list(params={"limit": 1}).data[0]
    assert latest.type == "customer.subscription.deleted"
    assert latest.data.object.id == subscription and latest.data.object.status == "canceled"
