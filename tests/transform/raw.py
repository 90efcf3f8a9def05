"""Hand-made raw rows in the vendors' shapes, written straight into the warehouse's raw layer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from orchestration.warehouse import ensure_raw_tables

LOADED_AT = "2024-01-01 00:00:00+00"


@dataclass
class RawLayer:
    """Collects raw rows, then writes them in one go."""

    objects: dict[str, list[tuple[str, int, dict, bool, str | None]]] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)
    coverage: list[tuple] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)

    def add(
        self,
        table: str,
        payload: dict[str, Any],
        *,
        updated_at: int | None = None,
        deleted_reason: str | None = None,
    ) -> dict[str, Any]:
        """Add one object row; `updated_at` defaults to the payload's own time."""
        stamp = updated_at or payload.get("updated_at") or payload.get("created") or 0
        row = (payload["id"], stamp, payload, deleted_reason is not None, deleted_reason)
        self.objects.setdefault(table, []).append(row)
        return payload

    def contact(
        self,
        contact_id: str,
        *,
        external_id: str | None = None,
        email: str | None = None,
        role: str = "user",
        signed_up_at: int | None = None,
        created_at: int = 1_700_000_000,
        deleted_reason: str | None = None,
        covered_from: int | None = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        """An Intercom contact (API 2.14 shape) and, by default, full event coverage."""
        payload = {
            "type": "contact",
            "id": contact_id,
            "external_id": external_id,
            "role": role,
            "email": email,
            "name": None,
            "created_at": created_at,
            "updated_at": created_at,
            "signed_up_at": signed_up_at,
            "last_seen_at": None,
            "location": {"type": "location", "country": "France", "city": "Paris"},
            "custom_attributes": {},
        } | extra
        if covered_from is not None:
            self.coverage.append((contact_id, external_id, covered_from))
        return self.add("intercom_contacts", payload, deleted_reason=deleted_reason)

    def event(
        self,
        event_name: str,
        created_at: int,
        *,
        contact_id: str | None = None,
        external_id: str | None = None,
        email: str | None = None,
    ) -> None:
        """An Intercom event, keyed as the ingestion keys it."""
        key = contact_id or external_id or email or ""
        event_id = hashlib.md5(f"{key}|{event_name}|{created_at}".encode()).hexdigest()
        payload = {
            "type": "event",
            "event_name": event_name,
            "created_at": created_at,
            "intercom_user_id": contact_id,
            "user_id": external_id,
            "email": email,
            "metadata": {},
        }
        self.events.append(
            (event_id, contact_id, external_id, email, event_name, created_at, payload)
        )

    def customer(
        self, customer_id: str, *, email: str | None = None, app_user_id: str | None = None
    ) -> dict[str, Any]:
        """A Stripe customer."""
        metadata = {"app_user_id": app_user_id} if app_user_id else {}
        payload = {
            "id": customer_id,
            "object": "customer",
            "created": 1_700_000_000,
            "email": email,
            "metadata": metadata,
        }
        return self.add("stripe_customers", payload)

    def invoice(
        self,
        invoice_id: str,
        customer_id: str,
        *,
        amount_paid: int,
        paid_at: int,
        currency: str = "usd",
        status: str = "paid",
        subscription: str | None = None,
        old_shape: bool = False,
    ) -> dict[str, Any]:
        """A Stripe invoice, in the API shape of 2025-03-31 or, with `old_shape`, before it."""
        payload: dict[str, Any] = {
            "id": invoice_id,
            "object": "invoice",
            "customer": customer_id,
            "status": status,
            "amount_paid": amount_paid,
            "total": amount_paid,
            "currency": currency,
            "created": paid_at - 60,
            "status_transitions": {"paid_at": paid_at if status == "paid" else None},
        }
        if old_shape:
            payload["subscription"] = subscription
            payload["paid"] = status == "paid"
        else:
            payload["parent"] = {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription},
            }
        return self.add("stripe_invoices", payload)

    def charge(
        self,
        charge_id: str,
        customer_id: str,
        *,
        amount: int,
        created: int,
        currency: str = "usd",
        amount_refunded: int = 0,
        refunded: bool | None = None,
        status: str = "succeeded",
    ) -> dict[str, Any]:
        """A Stripe charge; `refunded` defaults to Stripe's rule (true only when full)."""
        payload = {
            "id": charge_id,
            "object": "charge",
            "customer": customer_id,
            "amount": amount,
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded >= amount if refunded is None else refunded,
            "paid": status == "succeeded",
            "status": status,
            "currency": currency,
            "created": created,
        }
        return self.add("stripe_charges", payload)

    def refund(self, refund_id: str, charge_id: str, *, amount: int, created: int) -> None:
        """A Stripe refund from /v1/refunds."""
        payload = {
            "id": refund_id,
            "object": "refund",
            "charge": charge_id,
            "amount": amount,
            "currency": "usd",
            "status": "succeeded",
            "created": created,
        }
        self.add("stripe_refunds", payload)

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the raw tables when missing and insert everything collected."""
        ensure_raw_tables(con)
        for table, rows in self.objects.items():
            con.executemany(
                f"insert or replace into raw.{table} values (?, ?, ?, ?, ?, 'test', ?)",
                [
                    (oid, stamp, json.dumps(payload), deleted, reason, LOADED_AT)
                    for oid, stamp, payload, deleted, reason in rows
                ],
            )
        if self.events:
            con.executemany(
                "insert or replace into raw.intercom_events values"
                " (?, null, ?, ?, ?, ?, ?, ?, 'api', 'test', ?)",
                [(*row[:6], json.dumps(row[6]), LOADED_AT) for row in self.events],
            )
        if self.coverage:
            con.executemany(
                "insert or replace into raw.intercom_event_coverage values"
                " (?, ?, ?, null, null, 'test', ?)",
                [(*row, LOADED_AT) for row in self.coverage],
            )
        if self.links:
            con.executemany(
                "insert or replace into raw.intercom_contact_companies values"
                " (?, ?, null, 'test', ?)",
                [(*row, LOADED_AT) for row in self.links],
            )
