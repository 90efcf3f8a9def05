"""`nextbest sandbox ...`: run the local Intercom and Stripe stand-in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="The local stand-in for the Intercom and Stripe APIs.", no_args_is_help=True)
console = Console()
DEFAULT_OUT = Path("synthetic")


@app.command("serve")
def serve(
    dataset: str | None = typer.Option(
        None,
        help="simple_shop, mobile_onboarding_2018, synthetic, or events_file (default: "
        "NEXTBEST_DATASET, or events_file when --events is given).",
    ),
    port: int | None = typer.Option(None, help="Port (default NEXTBEST_SANDBOX_PORT; 0: free)."),
    faults: str | None = typer.Option(None, help="Fault profile (see docs/sandbox.md)."),
    events: Annotated[Path | None, typer.Option(help="Your own event log: a CSV file.")] = None,
    conversion_event: str | None = typer.Option(None, help="The event that converts (--events)."),
    user_column: str = typer.Option("user_id", help="Column of the user id in --events."),
    event_column: str = typer.Option("event", help="Column of the event name in --events."),
    time_column: str = typer.Option("timestamp", help="Column of the time in --events."),
    signup: str = typer.Option("first_event", help="first_event, or the sign-up event's name."),
    users: int | None = typer.Option(None, help="Synthetic users (NEXTBEST_SANDBOX_USERS)."),
    seed: int | None = typer.Option(None, help="Synthetic seed (NEXTBEST_SANDBOX_SEED)."),
    no_dirt: bool = typer.Option(False, "--no-dirt", help="Serve the data without the dirt."),
) -> None:
    """Serve a dataset as Intercom and Stripe on loopback until interrupted."""
    from orchestration.settings import get_settings
    from sandbox.runner import build_dataset_store, serve_store
    from sandbox.settings import SandboxSettings

    settings, sandbox_settings = get_settings(), SandboxSettings()
    chosen = dataset or ("events_file" if events else settings.dataset)
    if chosen == "events_file" and (events is None or conversion_event is None):
        raise typer.BadParameter("--events FILE.csv needs --conversion-event NAME")
    column_map = {user_column: "user_id", event_column: "event", time_column: "timestamp"}
    started = time.perf_counter()
    store = build_dataset_store(
        chosen,
        dirt=sandbox_settings.dirt and not no_dirt,
        event_window_days=sandbox_settings.event_window_days,
        users=users or sandbox_settings.users,
        seed=sandbox_settings.seed if seed is None else seed,
        events_file=events,
        conversion_event=conversion_event,
        column_map={k: v for k, v in column_map.items() if k != v},
        cache_dir=settings.cache_dir,
        signup=signup,
    )
    with serve_store(
        store,
        port=settings.sandbox_port if port is None else port,
        faults=faults or sandbox_settings.faults,
        rate_limit_per_minute=sandbox_settings.rate_limit_per_minute,
    ) as sb:
        facts = store.facts()
        console.print(
            f"[bold]sandbox[/bold] {chosen}: {facts['contacts']:,} contacts, "
            f"{facts['events']:,} events, {facts['stripe']['customers']:,} Stripe customers, "
            f"{facts['dirt']:,} dirty records; ready in {time.perf_counter() - started:.1f} s"
        )
        for name, value in sb.env().items():
            console.print(f"export {name}={value}")
        console.print(f"admin: {sb.base_url}/_sandbox/facts   (Ctrl-C stops)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopped")


@app.command("synthetic")
def synthetic(
    users: int = typer.Option(10_000, help="How many users."),
    seed: int = typer.Option(0, help="Seed."),
    out: Annotated[
        Path, typer.Option(help="Folder for events.parquet and best_actions.csv.")
    ] = DEFAULT_OUT,
) -> None:
    """Write a synthetic log and its ground truth (best_actions.csv) to a folder."""
    from sandbox.synthetic import generate

    started = time.perf_counter()
    frame, truth = generate(users, seed, out_dir=out)
    console.print(
        f"{users:,} users, {len(frame):,} events in {time.perf_counter() - started:.1f} s; "
        f"conversion event {truth.conversion_event}; wrote {out}/events.parquet and "
        f"{out}/best_actions.csv"
    )
