"""The write-back asset `intercom_next_best_actions` and its failure-rate check."""

import asyncio
import time
from typing import Any

import dagster as dg

from orchestration.activation import store
from orchestration.activation.plan import (
    Plan,
    declared_primary_goal,
    plan_writes,
    primary_goal,
    read_recommendations,
)
from orchestration.activation.scope import contact_scope
from orchestration.activation.settings import ActivationSettings, get_activation_settings
from orchestration.activation.writeback import (
    SendOutcome,
    WriteBackError,
    ensure_data_attributes,
    plan_rows,
    send_writes,
    utc_now,
)
from orchestration.resources import IntercomResource
from orchestration.settings import Settings, get_settings
from orchestration.warehouse import warehouse

ASSET_KEY = dg.AssetKey("intercom_next_best_actions")
NEXT_BEST_ACTIONS_KEY = dg.AssetKey("next_best_actions")


def _has_table(con: Any, schema: str, table: str) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
        > 0
    )


def build_plan(
    settings: Settings, activation: ActivationSettings, scope: list[str] | None
) -> tuple[str, Plan]:
    """Read the recommendations and the state table and plan the writes.

    Raises:
        WriteBackError: `ml.next_best_actions` does not exist yet.
    """
    with warehouse(settings.warehouse) as con:
        store.ensure_tables(con)
        if not _has_table(con, "ml", "next_best_actions"):
            raise WriteBackError(
                "ml.next_best_actions is missing: materialize next_best_actions first"
            )
        goal = primary_goal(con, activation.goal, declared_primary_goal())
        recommendations = read_recommendations(con, goal, scope)
        if scope is None and not recommendations:
            # An empty table would clear every contact; that is a failed upstream, not news.
            raise WriteBackError(f"ml.next_best_actions has no rows for goal {goal!r}")
        contacts = [r.contact_id for r in recommendations if r.contact_id]
        state = store.read_state(con, contacts if scope is not None else None)
        gone = store.read_gone(con)
    today = utc_now().date()
    return goal, plan_writes(recommendations, state, today, gone, clear_missing=scope is None)


def run_write_back(
    run_id: str,
    settings: Settings,
    activation: ActivationSettings,
    scope: list[str] | None = None,
    log: Any = None,
    intercom: IntercomResource | None = None,
) -> dict[str, Any]:
    """Plan, send (unless dry-run), and record one write-back; returns its numbers.

    Raises:
        WriteBackError: Nothing can be written safely; the attempts so far are recorded first.
        MissingCredentials: There are writes to send and no Intercom token is set.
    """
    intercom = intercom or IntercomResource()
    started = time.perf_counter()
    goal, plan = build_plan(settings, activation, scope)
    counts = plan.counts()
    if log:
        log.info(
            f"goal {goal!r}: {counts['contacts_to_set']} contacts to set, "
            f"{counts['contacts_to_clear']} to clear, {counts['contacts_unchanged']} unchanged, "
            f"{counts['contacts_invalid']} with invalid values, {counts['contacts_gone']} gone, "
            f"{counts['users_without_contact']} users without a contact"
            + (f", scoped to {len(scope)} contacts" if scope is not None else "")
        )
        if plan.without_contact:
            log.warning(f"users without an Intercom contact: {plan.without_contact[:20]}")
        if plan.duplicated_contacts:
            log.warning(f"contacts with several users, not written: {plan.duplicated_contacts}")
    metadata: dict[str, Any] = {"goal": goal, "dry_run": activation.dry_run, **counts}
    failure: WriteBackError | None = None
    if activation.dry_run:
        rows = plan_rows(plan.writes)
    else:
        rows = plan_rows(plan.invalid_writes)
        valid = plan.valid_writes
        if valid:
            with intercom.client() as client:
                attributes = ensure_data_attributes(client)
                metadata["attributes_created"] = len(attributes["created"])
                if attributes["created"] and log:
                    log.info(f"created contact attributes {attributes['created']}")
            try:
                outcome, stats = asyncio.run(_send(intercom, valid, activation.concurrency))
            except WriteBackError as exc:
                failure = exc
                outcome, stats = getattr(exc, "outcome", SendOutcome()), {}
            rows += outcome.rows
            metadata.update({f"http_{k}": v for k, v in stats.items()})
    with warehouse(settings.warehouse) as con:
        store.ensure_tables(con)
        store.record_attempts(con, rows, run_id, dry_run=activation.dry_run)
        summary = store.run_summary(con, run_id)
    metadata.update(summary)
    metadata["seconds"] = round(time.perf_counter() - started, 3)
    if log:
        log.info(
            f"{'planned' if activation.dry_run else 'attempted'} "
            f"{summary['contacts_attempted']} contacts, {summary['contacts_failed']} failed, "
            f"in {metadata['seconds']} s"
        )
    if failure:
        raise failure
    return metadata


async def _send(
    intercom: IntercomResource, writes: list, concurrency: int
) -> tuple[SendOutcome, dict[str, float]]:
    async with intercom.async_client(max_connections=concurrency) as client:
        try:
            outcome = await send_writes(client, writes, concurrency=concurrency)
        finally:
            stats = client.stats.snapshot()
    return outcome, stats


@dg.asset(
    key=ASSET_KEY,
    group_name="activation",
    owners=["team:growth"],
    deps=[NEXT_BEST_ACTIONS_KEY],
    kinds={"intercom", "duckdb"},
    description=(
        "Each contact's next best action as the custom attributes nb_next_action, "
        "nb_next_action_label, nb_conversion_score and nb_updated_at; only changed contacts "
        "are written, converted users are cleared, every attempt lands in "
        "activation.intercom_write_audit."
    ),
)
def intercom_next_best_actions(
    context: dg.AssetExecutionContext, intercom: IntercomResource
) -> dg.MaterializeResult:
    """Write changed next best actions to Intercom."""
    metadata = run_write_back(
        context.run_id,
        get_settings(),
        get_activation_settings(),
        scope=contact_scope(context.run.tags),
        log=context.log,
        intercom=intercom,
    )
    return dg.MaterializeResult(metadata=metadata)


def failed_share_check(
    con: Any, run_id: str, max_failed_share: float
) -> tuple[bool, dict[str, Any]]:
    """Whether a run's failed contacts stay within the allowed share, with the numbers."""
    summary = store.run_summary(con, run_id)
    attempted, failed = summary["contacts_attempted"], summary["contacts_failed"]
    share = failed / attempted if attempted else 0.0
    return share <= max_failed_share, {
        **summary,
        "failed_share": round(share, 6),
        "max_failed_share": max_failed_share,
        "run_id": run_id,
    }


@dg.asset_check(
    asset=ASSET_KEY,
    name="failed_attempts_within_limit",
    description="Fails when more than NEXTBEST_ACTIVATION_MAX_FAILED_SHARE (1%) of the "
    "contacts attempted in the latest write-back failed (404, 400, invalid value, errors).",
)
def failed_attempts_within_limit(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Check the latest write-back's share of failed contacts."""
    event = context.instance.get_latest_materialization_event(ASSET_KEY)
    run_id = event.run_id if event else context.run_id
    with warehouse(get_settings().warehouse) as con:
        store.ensure_tables(con)
        passed, metadata = failed_share_check(
            con, run_id, get_activation_settings().max_failed_share
        )
    return dg.AssetCheckResult(
        passed=passed, metadata=metadata, severity=dg.AssetCheckSeverity.ERROR
    )
