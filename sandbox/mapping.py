"""Map an event log onto Intercom contacts, companies and events and Stripe payments.

Each user becomes a contact (`external_id` = the log's user id, `signed_up_at` = the first
event or a named sign-up event) holding its events; each converter becomes a Stripe customer
(`metadata.app_user_id`) with an active subscription, a paid invoice and a charge at the first
conversion. Companies are made up (the logs have none), deterministically.

Then the dirt real accounts have is added at fixed shares (see `DIRT_SHARES` and
docs/sandbox.md); every record it changes is listed in `Store.dirt` with its kind.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from sandbox.datasets import DatasetError, EventLog
from sandbox.store import STRIPE_EVENT_RETENTION_SECONDS, Contacts, Events, Store
from sandbox.stripe_fixtures import LEGACY_INVOICE

log = logging.getLogger(__name__)

# Share of the eligible records each kind of dirt changes; "min" kinds change at least one.
DIRT_SHARES = {
    "lead": 0.02,  # non-converting users turned into leads without external_id
    "no_email": 0.03,  # contacts without an email
    "shared_email": 0.01,  # contacts given the email of another contact
    "email_only_customer": 0.02,  # customers with no metadata, matched only by email
    "trial_invoice": 0.05,  # converters whose subscription started with a $0 trial invoice
    "trial_only_customer": 0.01,  # non-converters with a trialing subscription, $0 invoice only
    "refunded_charge": 0.01,  # converters whose charge was fully refunded (min 1)
    "zero_decimal_currency": 0.01,  # converters who paid in JPY (min 1)
    "deleted_customer": 0.005,  # converting customers deleted since (min 1)
    "legacy_invoice": 0.05,  # invoices in the shape of API versions before 2025-03-31 (min 1)
}
AT_LEAST_ONE = {"refunded_charge", "zero_decimal_currency", "deleted_customer", "legacy_invoice"}
# The legacy invoices are drawn from their own stream, so adding them moved no other dirt.
LEGACY_STREAM = 21

PRICE_USD_CENTS = 4900
PRICE_JPY = 7000
INDUSTRIES = ("software", "retail", "education", "healthcare", "finance", "media", "logistics")
PLANS = ("free", "starter", "growth", "enterprise")
COUNTRIES = (
    ("United States", "New York"),
    ("United Kingdom", "London"),
    ("Germany", "Berlin"),
    ("France", "Paris"),
    ("Brazil", "São Paulo"),
    ("India", "Bengaluru"),
    ("Japan", "Tokyo"),
)


def _hex_ids(tag: str, count: int) -> list[str]:
    """Intercom-style 24-hex ids: 8 hex of the dataset tag, then a 16-hex counter."""
    prefix = hashlib.md5(tag.encode()).hexdigest()[:8]
    return [f"{prefix}{k:016x}" for k in range(count)]


def _stripe_id(prefix: str, tag: str, k: int) -> str:
    return f"{prefix}_{hashlib.md5(f'{tag}{k}'.encode()).hexdigest()[:14]}"


def _take(rng: np.random.Generator, pool: np.ndarray, kind: str) -> np.ndarray:
    count = round(len(pool) * DIRT_SHARES[kind])
    if kind in AT_LEAST_ONE and len(pool):
        count = max(count, 1)
    return np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))


def build_store(
    event_log: EventLog,
    *,
    dirt: bool = True,
    event_window_days: int = 90,
    clock: int | None = None,
    signup: str = "first_event",
    n_companies: int | None = None,
    seed: int = 0,
) -> Store:
    """Build the store for an event log.

    Args:
        event_log: The log (sorted by user and time).
        dirt: Add the documented dirt.
        event_window_days: Intercom's event window; 0 turns it off.
        clock: The sandbox's 'now' (Unix seconds); default a minute after the last event.
        signup: "first_event", or the name of the event that marks the sign-up.
        n_companies: How many companies to make up; default one per 12 users, 5 to 300.
        seed: Seed of the dirt's and the companies' choices.

    Returns:
        The populated store.
    """
    frame = event_log.events
    tag = event_log.name
    users, user_codes = _factorize(frame["user_id"])
    n_users = len(users)
    names, name_codes = _factorize(frame["event"])
    times = frame["timestamp"].to_numpy(dtype=np.int64)
    # The log is sorted by user id text and time, as np.unique sorts users: codes ascend.
    order = np.lexsort((times, user_codes))
    user_codes, name_codes, times = user_codes[order], name_codes[order], times[order]
    counts = np.bincount(user_codes, minlength=n_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    first = times[offsets[:-1]]
    last = times[offsets[1:] - 1]
    if signup == "first_event":
        signed = first.copy()
    else:
        code = _code_of(names, signup)
        if code < 0:
            raise DatasetError(
                f"{event_log.name}: the sign-up event {signup!r} never occurs; "
                "name one that does, or use first_event"
            )
        hit = name_codes == code
        signed = first.copy()
        signup_time = pd.Series(times[hit]).groupby(user_codes[hit]).min()
        signed[signup_time.index.to_numpy()] = signup_time.to_numpy()
    conversion_code = _code_of(names, event_log.conversion_event)
    is_conv = name_codes == conversion_code
    conv_time = pd.Series(times[is_conv]).groupby(user_codes[is_conv]).min()
    converters = conv_time.index.to_numpy()
    if clock is None:
        clock = int(times.max()) + 60 if len(times) else 1_700_000_000

    rng = np.random.default_rng(seed)
    n_comp = n_companies if n_companies is not None else int(np.clip(n_users // 12, 5, 300))
    companies = _companies(tag, n_comp, rng, int(first.min()) if n_users else clock)
    company = rng.integers(0, n_comp, size=n_users) if n_comp else np.full(n_users, -1)
    place = rng.integers(0, len(COUNTRIES), size=n_users)
    ids = _hex_ids(tag, n_users)
    user_list = [str(u) for u in users.tolist()]
    domains = [companies[c]["website"].removeprefix("https://") for c in company.tolist()]
    contacts = Contacts(
        ids=ids,
        external_ids=list(user_list),
        emails=[f"user{k}@{d}" for k, d in enumerate(domains)],
        names=[f"User {k}" for k in range(n_users)],
        roles=["user"] * n_users,
        created_at=signed.copy(),
        updated_at=last.copy(),
        signed_up_at=signed.copy(),
        last_seen_at=last.copy(),
        company=company.astype(np.int32),
        country=[COUNTRIES[p][0] for p in place.tolist()],
        city=[COUNTRIES[p][1] for p in place.tolist()],
        custom=[{} for _ in range(n_users)],
        state=[None] * n_users,
        live=np.ones(n_users, dtype=bool),
    )
    for k, c in enumerate(company.tolist()):
        companies[c]["user_count"] += 1
        del k
    events = Events(
        contact=user_codes.astype(np.int32),
        name=name_codes.astype(np.int32),
        created_at=times,
        names=[str(n) for n in names.tolist()],
        offsets=offsets,
    )
    store = Store(
        dataset=tag,
        conversion_event=event_log.conversion_event,
        contacts=contacts,
        events=events,
        companies=companies,
        clock=clock,
        event_window_days=event_window_days,
    )
    store.rejected = [asdict(row) for row in event_log.rejected]
    store.duplicate_rows = event_log.duplicate_rows
    email_only = _add_payments(store, tag, converters, conv_time.to_numpy(), user_list, rng, dirt)
    if dirt:
        _add_contact_dirt(store, rng, converters, email_only)
        _add_legacy_invoices(store, np.random.default_rng([seed, LEGACY_STREAM]))
    log.info(
        "sandbox %s: %d contacts, %d events, %d companies, %d customers, %d dirty records",
        tag,
        n_users,
        len(events),
        n_comp,
        len(store.stripe["customers"].objects),
        len(store.dirt),
    )
    return store


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each row's code; categorical columns skip the string sort."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray(column.cat.categories, dtype=object)
        used, codes = np.unique(column.cat.codes.to_numpy(), return_inverse=True)
        values = categories[used]
        order = np.argsort(values.astype(str), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return values[order], rank[codes]
    return np.unique(column.to_numpy(dtype=object), return_inverse=True)


def _code_of(names: np.ndarray, name: str) -> int:
    hits = np.flatnonzero(names == name)
    return int(hits[0]) if len(hits) else -1


def _companies(tag: str, count: int, rng: np.random.Generator, since: int) -> list[dict]:
    ids = _hex_ids(f"{tag}/companies", count)
    sizes = rng.choice([5, 12, 25, 60, 150, 400, 1200], size=count)
    industries = rng.integers(0, len(INDUSTRIES), size=count)
    plans = rng.integers(0, len(PLANS), size=count)
    spend = rng.integers(0, 5000, size=count)
    created = since - rng.integers(86400, 3 * 365 * 86400, size=count)
    return [
        {
            "type": "company",
            "id": ids[k],
            "name": f"Company {k}",
            "app_id": "sandbox0",
            "company_id": f"company-{k}",
            "plan": {"type": "plan", "id": str(plans[k]), "name": PLANS[plans[k]]},
            "remote_created_at": int(created[k]),
            "created_at": int(created[k]),
            "updated_at": int(created[k]),
            "last_request_at": int(since),
            "size": int(sizes[k]),
            "website": f"https://company{k}.example.test",
            "industry": INDUSTRIES[industries[k]],
            "monthly_spend": int(spend[k]),
            "session_count": 0,
            "user_count": 0,
            "custom_attributes": {},
            "tags": {"type": "tag.list", "tags": []},
            "segments": {"type": "segment.list", "segments": []},
        }
        for k in range(count)
    ]


def _add_payments(
    store: Store,
    tag: str,
    converters: np.ndarray,
    conv_times: np.ndarray,
    users: list[str],
    rng: np.random.Generator,
    dirt: bool,
) -> set[int]:
    """Customers, subscriptions, invoices and charges for converters, plus the payment dirt.

    Returns:
        The contacts (positions) whose only customer is an `email_only_customer`.
    """
    email_only: set[int] = set()
    positions = np.arange(len(converters))
    chosen: dict[str, set[int]] = {}
    non_converters = np.setdiff1d(np.arange(len(users)), converters)
    if dirt:
        for kind in (
            "email_only_customer",
            "trial_invoice",
            "refunded_charge",
            "zero_decimal_currency",
            "deleted_customer",
        ):
            chosen[kind] = set(_take(rng, positions, kind).tolist())
        trial_only = _take(rng, non_converters, "trial_only_customer")
    else:
        trial_only = np.array([], dtype=np.int64)
    # Objects must enter the tables in `created` order.
    entries = [
        (int(t), int(u), k) for k, (u, t) in enumerate(zip(converters, conv_times, strict=True))
    ]
    entries += [
        (int(store.contacts.signed_up_at[u]) + 60, int(u), -1 - j)
        for j, u in enumerate(trial_only.tolist())
    ]
    entries.sort()
    deleted = []
    pending: dict[str, list[dict]] = {kind: [] for kind in store.stripe}

    def pending_add(kind: str, obj: dict) -> None:
        pending[kind].append(obj)

    for paid_at, user, k in entries:
        contact_email = store.contacts.emails[user]
        cus_id = _stripe_id("cus", tag, user)
        customer = {
            "id": cus_id,
            "object": "customer",
            "created": paid_at - 120 if k >= 0 else paid_at,
            "email": contact_email,
            "name": store.contacts.names[user],
            "metadata": {"app_user_id": users[user]},
            "currency": "usd",
        }
        if k >= 0 and k in chosen.get("email_only_customer", ()):
            # Stripe keeps the address as typed: other case, a trailing space, no user id.
            customer["email"] = contact_email.upper() + " "
            customer["metadata"] = {}
            email_only.add(user)
            store.dirt.append(_dirt("email_only_customer", "customer", cus_id, users[user]))
        pending_add("customers", customer)
        sub_id = _stripe_id("sub", tag, user)
        trial = k < 0 or k in chosen.get("trial_invoice", ())
        start = customer["created"]
        subscription = {
            "id": sub_id,
            "object": "subscription",
            "created": start,
            "customer": cus_id,
            "status": "trialing" if k < 0 else "active",
            "start_date": start,
            "billing_cycle_anchor": start,
            "current_period_start": start,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "trial_start": start if trial else None,
            "trial_end": (start + 14 * 86400) if k < 0 else (paid_at if trial else None),
            "latest_invoice": None,
            "metadata": {},
        }
        pending_add("subscriptions", subscription)
        if trial:
            zero = _invoice(tag, f"{user}/trial", cus_id, sub_id, start, 0, "usd", customer)
            pending_add("invoices", zero)
            subscription["latest_invoice"] = zero["id"]
            kind = "trial_only_customer" if k < 0 else "trial_invoice"
            store.dirt.append(_dirt(kind, "invoice", zero["id"], users[user]))
        if k < 0:
            continue
        jpy = k in chosen.get("zero_decimal_currency", ())
        currency, amount = ("jpy", PRICE_JPY) if jpy else ("usd", PRICE_USD_CENTS)
        if jpy:
            store.dirt.append(_dirt("zero_decimal_currency", "customer", cus_id, users[user]))
            customer["currency"] = subscription["currency"] = "jpy"
        invoice = _invoice(tag, str(user), cus_id, sub_id, paid_at, amount, currency, customer)
        pending_add("invoices", invoice)
        subscription["latest_invoice"] = invoice["id"]
        charge_id = _stripe_id("ch", tag, user)
        refunded = k in chosen.get("refunded_charge", ())
        charge = {
            "id": charge_id,
            "object": "charge",
            "created": paid_at,
            "customer": cus_id,
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": amount if refunded else 0,
            "refunded": refunded,
            "captured": True,
            "paid": True,
            "status": "succeeded",
            "currency": currency,
            "description": "Subscription creation",
            "receipt_email": contact_email,
            "billing_details": {
                "address": None,
                "email": contact_email,
                "name": customer["name"],
                "phone": None,
                "tax_id": None,
            },
            "metadata": {},
        }
        pending_add("charges", charge)
        if refunded:
            refund = {
                "id": _stripe_id("re", tag, user),
                "object": "refund",
                "created": paid_at,
                "charge": charge_id,
                "amount": amount,
                "currency": currency,
                "customer": cus_id,
                "status": "succeeded",
                "reason": "requested_by_customer",
                "metadata": {},
            }
            pending_add("refunds", refund)
            store.dirt.append(_dirt("refunded_charge", "charge", charge_id, users[user]))
        if k in chosen.get("deleted_customer", ()):
            deleted.append((cus_id, users[user]))
    for kind, objects in pending.items():
        # One sort per table: objects of one user are made out of `created` order.
        for obj in sorted(objects, key=lambda o: o["created"]):
            store.stripe_add(kind, obj)
    _add_load_events(store)
    for cus_id, user_id in deleted:
        store.deleted_customers.add(cus_id)
        store.dirt.append(_dirt("deleted_customer", "customer", cus_id, user_id))
        customer = store.stripe["customers"].get(cus_id)
        event = _load_event("customer.deleted", "customers", customer)
        # Deleted an hour before the clock, so the event is still within Stripe's retention.
        event["created"] = store.now() - 3600
        del event["_ref"]
        # The event carries the customer as it was, as Stripe's does; a fetch now answers
        # only `{"id", "object", "deleted": true}`.
        event["data"] = {"object": store.stripe_render("customers", customer)}
        store.stripe_add("events", event)
    return email_only


# The event each object's creation emitted; refunded charges add `charge.refunded`.
CREATION_EVENTS = {
    "customers": "customer.created",
    "subscriptions": "customer.subscription.created",
    "invoices": "invoice.paid",
    "charges": "charge.succeeded",
    "refunds": "charge.refunded",
}


def _load_event(event_type: str, kind: str, obj: dict) -> dict:
    return {
        "id": f"evt_{obj['id'].partition('_')[2]}{len(event_type):02d}",
        "object": "event",
        "type": event_type,
        "created": obj["created"],
        "api_version": "2025-03-31.basil",
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "_ref": (kind, obj["id"] if kind != "refunds" else obj["charge"]),
    }


def _add_load_events(store: Store) -> None:
    """Events for the objects created within Stripe's 30-day event retention."""
    oldest = store.now() - STRIPE_EVENT_RETENTION_SECONDS
    events = []
    for kind, event_type in CREATION_EVENTS.items():
        ref_kind = "charges" if kind == "refunds" else kind
        for obj in store.stripe[kind].objects:
            if obj["created"] >= oldest:
                event = _load_event(event_type, kind, obj)
                event["_ref"] = (ref_kind, event["_ref"][1])
                events.append(event)
    events.sort(key=lambda e: (e["created"], e["id"]))
    for event in events:
        store.stripe_add("events", event)


def _invoice(
    tag: str,
    key: str,
    customer_id: str,
    subscription_id: str,
    at: int,
    amount: int,
    currency: str,
    customer: dict,
) -> dict:
    invoice_id = _stripe_id("in", tag, key)
    return {
        "id": invoice_id,
        "object": "invoice",
        "created": at,
        "customer": customer_id,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "status": "paid",
        "currency": currency,
        "amount_due": amount,
        "amount_paid": amount,
        "amount_remaining": 0,
        "subtotal": amount,
        "total": amount,
        "attempted": True,
        "attempt_count": 1 if amount else 0,
        "billing_reason": "subscription_create",
        "effective_at": at,
        "due_date": None,
        "period_start": at,
        "period_end": at,
        "status_transitions": {
            "finalized_at": at,
            "marked_uncollectible_at": None,
            "paid_at": at,
            "voided_at": None,
        },
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
        },
        "last_finalization_error": None,
        "from_invoice": None,
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "metadata": {},
    }


def _add_legacy_invoices(store: Store, rng: np.random.Generator) -> None:
    """Serve some invoices as versions before 2025-03-31 did (failure mode 21).

    They carry the subscription at the top level, with `paid` and `charge`, and no `parent`:
    what a warehouse loaded before the upgrade holds, so staging must read both shapes.
    """
    invoices = store.stripe["invoices"].objects
    charges = {c["customer"]: c["id"] for c in store.stripe["charges"].objects}
    users = {c["id"]: c["metadata"].get("app_user_id") for c in store.stripe["customers"].objects}
    # E-mail-only customers lost their user id; their dirt record still names it.
    users |= {d["id"]: d["user_id"] for d in store.dirt if d["kind"] == "email_only_customer"}
    for position in _take(rng, np.arange(len(invoices)), "legacy_invoice").tolist():
        invoice = invoices[position]
        parent = invoice.pop("parent")
        invoice["_template"] = LEGACY_INVOICE
        invoice["subscription"] = parent["subscription_details"]["subscription"]
        invoice["paid"] = invoice["status"] == "paid"
        # The charge that paid it; a $0 invoice had none.
        invoice["charge"] = charges.get(invoice["customer"]) if invoice["amount_paid"] else None
        store.dirt.append(
            _dirt("legacy_invoice", "invoice", invoice["id"], users.get(invoice["customer"]))
        )


def _add_contact_dirt(
    store: Store, rng: np.random.Generator, converters: np.ndarray, email_only: set[int]
) -> None:
    """Leads, missing and shared e-mails.

    The e-mail dirt leaves alone the contacts of `email_only` customers (and never gives their
    address to another contact): such a customer links to its user by that address alone, so
    changing it would turn a payment into no one's without the dirt saying so. The only dirt
    that takes a converter's payment away stays `refunded_charge`.
    """
    c = store.contacts
    n = len(c)
    non_converters = np.setdiff1d(np.arange(n), converters)
    spared = np.array(sorted(email_only), dtype=np.int64)
    for i in _take(rng, non_converters, "lead").tolist():
        store.dirt.append(_dirt("lead", "contact", c.ids[i], c.external_ids[i]))
        store.external_index.pop(c.external_ids[i], None)
        c.roles[i] = "lead"
        c.external_ids[i] = None
        c.signed_up_at[i] = -1
    everyone = np.setdiff1d(np.arange(n), spared)
    for i in _take(rng, everyone, "no_email").tolist():
        store.dirt.append(_dirt("no_email", "contact", c.ids[i], c.external_ids[i]))
        c.emails[i] = None
    with_email = np.setdiff1d(
        np.array([i for i in range(n) if c.emails[i]], dtype=np.int64), spared
    )
    sharers = _take(rng, with_email, "shared_email")
    for i in sharers.tolist():
        other = int(with_email[(np.searchsorted(with_email, i) + 1) % len(with_email)])
        store.dirt.append(
            _dirt("shared_email", "contact", c.ids[i], c.external_ids[i], c.ids[other])
        )
        c.emails[i] = c.emails[other]


def _dirt(kind: str, obj: str, object_id: str, user_id: str | None, detail: str = "") -> dict:
    return {"kind": kind, "object": obj, "id": object_id, "user_id": user_id, "detail": detail}
