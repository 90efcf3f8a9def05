"""`nextbest sandbox ...`: run the local Intercom and Stripe stand-in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

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
    port: int | None = typer.Option(
        None, min=0, max=65535, help="Port (default NEXTBEST_SANDBOX_PORT; 0: free)."
    ),
    faults: str | None = typer.Option(None, help="Fault profile (see docs/sandbox.md)."),
    events: Annotated[Path | None, typer.Option(help="Your own event log: a CSV file.")] = None,
    conversion_event: str | None = typer.Option(None, help="The event that converts (--events)."),
    user_column: str = typer.Option("user_id", help="Column of the user id in --events."),
    event_column: str = typer.Option("event", help="Column of the event name in --events."),
    time_column: str = typer.Option("timestamp", help="Column of the time in --events."),
    signup: str = typer.Option("first_event", help="first_event, or the sign-up event's name."),
    users: int | None = typer.Option(None, min=1, help="Synthetic users (NEXTBEST_SANDBOX_USERS)."),
    seed: int | None = typer.Option(None, help="Synthetic seed (NEXTBEST_SANDBOX_SEED)."),
    no_dirt: bool = typer.Option(False, "--no-dirt", help="Serve the data without the dirt."),
) -> None:
    """Serve a dataset as Intercom and Stripe on loopback until interrupted."""
    from pydantic import ValidationError

    from orchestration.settings import get_settings
    from sandbox.datasets import DatasetError
    from sandbox.faults import profile
    from sandbox.runner import DATASETS, build_dataset_store, serve_store
    from sandbox.settings import SandboxSettings

    try:
        settings, sandbox_settings = get_settings(), SandboxSettings()
    except ValidationError as error:
        console.print(f"[red]error:[/red] {settings_problems(error)}", soft_wrap=True)
        raise typer.Exit(1) from error
    chosen = dataset or ("events_file" if events else settings.dataset)
    # Every argument is checked before the dataset is built, which takes seconds.
    if chosen not in DATASETS:
        raise typer.BadParameter(
            f"unknown dataset {chosen!r}; known: {', '.join(DATASETS)}",
            param_hint="--dataset" if dataset else "NEXTBEST_DATASET",
        )
    if chosen == "events_file" and (events is None or conversion_event is None):
        raise typer.BadParameter("--events FILE.csv needs --conversion-event NAME")
    if chosen != "events_file" and (events is not None or conversion_event is not None):
        raise typer.BadParameter(
            f"--events and --conversion-event go with --dataset events_file, not {chosen}"
        )
    flags = {"--user-column": user_column, "--event-column": event_column}
    flags["--time-column"] = time_column
    named = [flag for flag, column in flags.items() if list(flags.values()).count(column) > 1]
    if named:
        raise typer.BadParameter(f"{' and '.join(named)} name the same column")
    try:
        profile(faults or sandbox_settings.faults)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--faults") from error
    column_map = {user_column: "user_id", event_column: "event", time_column: "timestamp"}
    started = time.perf_counter()
    try:
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
    except DatasetError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(1) from error
    _report_rejected(store.rejected, store.duplicate_rows)
    with serve_store(
        store,
        port=settings.sandbox_port if port is None else port,
        faults=faults or sandbox_settings.faults,
        rate_limit_per_minute=sandbox_settings.rate_limit_per_minute,
    ) as sb:
        facts = store.facts()
        console.print(
            f"[bold]sandbox[/bold] {chosen}: {_count(facts['contacts'], 'contact')}, "
            f"{_count(facts['events'], 'event')}, "
            f"{_count(facts['stripe']['customers'], 'Stripe customer')}, "
            f"{_count(facts['dirt'], 'dirty record')}; "
            f"ready in {time.perf_counter() - started:.1f} s"
        )
        if facts["window_start"] is not None:
            # Said here, as a file's older events would otherwise go missing without a word.
            served = int((store.events.created_at >= facts["window_start"]).sum())
            console.print(
                f"events served: the last {facts['event_window_days']} days before the clock,"
                f" {served:,} of {len(store.events):,}"
                " (NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS=0 serves all)",
                soft_wrap=True,
            )
        for name, value in sb.env().items():
            console.print(f"export {name}={value}")
        console.print(f"admin: {sb.base_url}/_sandbox/facts   (Ctrl-C stops)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopped")


def settings_problems(error: Any) -> str:
    """A pydantic ValidationError as one line per variable: name, problem, value given."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"{name}={problem.get('input')!r}: {problem['msg']}")
    return "invalid settings: " + "; ".join(lines)


def _count(n: int, noun: str) -> str:
    """`1 row`, `2 rows`: a count with its noun in the number it needs."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _report_rejected(rejected: list[dict], duplicate_rows: int, shown: int = 10) -> None:
    """Say how many rows of an events file were set aside, and why, for the first few.

    This is the one place the command reports them: the loader only logs them at INFO, so
    they are not printed twice.
    """
    if duplicate_rows:
        verb = "repeats" if duplicate_rows == 1 else "repeat"
        console.print(
            f"{_count(duplicate_rows, 'row')} {verb} another row's user, event and second; "
            "all are served",
            soft_wrap=True,
        )
    if not rejected:
        return
    console.print(
        f"[yellow]set aside {_count(len(rejected), 'row')} that could not be read[/yellow] "
        "(all of them: GET /_sandbox/rejected):",
        soft_wrap=True,
    )
    for row in rejected[:shown]:
        console.print(f"  line {row['line']}: {row['reason']}: {row['record']}", soft_wrap=True)
    if len(rejected) > shown:
        console.print(f"  ... and {len(rejected) - shown:,} more", soft_wrap=True)


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
