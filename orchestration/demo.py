"""The main job end to end on the embedded default, as `make demo` runs it.

The demo starts the sandbox (unless credentials point at the real services), materializes the
`full_refresh` job through the Dagster instance in the home folder, so the runs, materializations
and checks are there when the UI opens, and prints a summary read back from the warehouse, the
MLflow registry and the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestration.settings import Settings, get_settings

if TYPE_CHECKING:
    from sandbox.settings import SandboxSettings

JOB_NAME = "full_refresh"


@dataclass
class DemoSummary:
    """The figures the demo prints, each read from where the pipeline stored it."""

    users: int = 0
    events: int = 0
    sessions: int = 0
    converters: int = 0
    window_days: int = 7
    goal: str = ""
    champion_version: str | None = None
    model_auc: float | None = None
    logreg_auc: float | None = None
    base_rate_auc: float | None = None
    recommended_users: int = 0
    contacts_written: int = 0
    write_failures: int = 0
    sandbox_writes: int | None = None
    top_actions: list[tuple[str, int]] = field(default_factory=list)
    example_user: str | None = None


def demo_event_window_days(options: SandboxSettings) -> int:
    """Days of events the demo's sandbox serves: 0 (all) unless the variable was set.

    Read through the settings, so an empty variable counts as unset and a bad one is refused
    naming the variable, as everywhere else.
    """
    if "event_window_days" in options.model_fields_set:
        return options.event_window_days
    return 0


@contextlib.contextmanager
def _sources(settings: Settings, console: Console) -> Iterator[object | None]:
    """The sandbox when no credentials are set, with its variables exported; else nothing."""
    if not settings.uses_sandbox:
        stripe_url = settings.stripe_base_url or "https://api.stripe.com"
        console.print(f"using Intercom at {settings.intercom_url} and Stripe at {stripe_url}")
        yield None
        return
    from sandbox.runner import running_sandbox
    from sandbox.settings import SandboxSettings

    options = SandboxSettings()
    # The demo shows the whole event history (Intercom's 90-day window off), as a real account
    # has it after `nextbest import-events` of its older events; only an explicit
    # NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS turns the window on here.
    window = demo_event_window_days(options)
    from sandbox.datasets import simple_shop_path

    if settings.dataset == "simple_shop" and not simple_shop_path(settings.cache_dir).exists():
        console.print(
            f"downloading simple_shop from PyPI, once: later runs read"
            f" {simple_shop_path(settings.cache_dir)}"
        )
    console.print(
        f"starting the sandbox with dataset [bold]{settings.dataset}[/bold]"
        f" (dirt {'on' if options.dirt else 'off'}, faults {options.faults or 'none'},"
        f" event window {'off' if window == 0 else f'{window} days'})"
    )
    with running_sandbox(
        settings.dataset,
        faults=options.faults,
        dirt=options.dirt,
        event_window_days=window,
        rate_limit_per_minute=options.rate_limit_per_minute,
        users=options.users,
        seed=options.seed,
        cache_dir=settings.cache_dir,
    ) as sandbox:
        saved = {key: os.environ.get(key) for key in sandbox.env()}
        os.environ.update(sandbox.env())
        console.print(f"sandbox listening on {sandbox.base_url}")
        try:
            yield sandbox
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            console.print("sandbox stopped")


def _scalar(con, sql: str, params: list | None = None):
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def converters_within(con, window_days: int) -> int:
    """Users whose first payment came within `window_days` of sign-up, both ends included.

    Counted for the goal's window, as its labels are, and not from the marts'
    `converted_within_window`: that one uses NEXTBEST_CONVERSION_WINDOW_DAYS, which may be
    longer than the goal's.
    """
    return _scalar(
        con,
        "select count(*) from marts.fct_conversion_labels"
        " where first_payment_epoch <= signed_up_epoch + ? * 86400",
        [window_days],
    )


def read_summary(settings: Settings, run_id: str, sandbox: object | None) -> DemoSummary:
    """Read the demo's figures back from the warehouse, MLflow and the sandbox."""
    from ml.goals import load_goals, primary_goal
    from orchestration.models.settings import MLSettings
    from orchestration.warehouse import connect

    goal = primary_goal(load_goals(MLSettings().goals_file))
    summary = DemoSummary(goal=goal.name, window_days=goal.window_days)
    with connect(settings.warehouse, read_only=True) as con:
        summary.users = _scalar(con, "select count(*) from marts.dim_users")
        summary.events = _scalar(con, "select count(*) from marts.fct_user_journeys")
        summary.sessions = _scalar(con, "select count(*) from marts.fct_sessions")
        summary.converters = converters_within(con, goal.window_days)
        summary.recommended_users = _scalar(
            con,
            "select count(*) from ml.next_best_actions where goal = ? and status = 'recommended'",
            [goal.name],
        )
        summary.top_actions = con.execute(
            "select action, count(*) as n from ml.next_best_actions"
            " where goal = ? and status = 'recommended' group by action order by n desc, action"
            " limit 5",
            [goal.name],
        ).fetchall()
        summary.example_user = _scalar(
            con,
            "select user_id from ml.next_best_actions where goal = ? and status = 'recommended'"
            # The user the model expects an action to help most: the clearest story to show.
            " order by lift desc, conversion_score desc, user_id limit 1",
            [goal.name],
        )
        summary.contacts_written = _scalar(
            con,
            "select count(distinct contact_id) from activation.intercom_write_audit"
            " where run_id = ? and status = 'ok' and not dry_run",
            [run_id],
        )
        summary.write_failures = _scalar(
            con,
            "select count(*) from activation.intercom_write_audit"
            " where run_id = ? and status not in ('ok', 'planned')",
            [run_id],
        )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    with contextlib.suppress(Exception):
        version = client.get_model_version_by_alias(f"nextbest-{goal.name}", "champion")
        summary.champion_version = version.version
        metrics = client.get_run(version.run_id).data.metrics
        summary.model_auc = metrics.get("model_test_roc_auc")
        summary.logreg_auc = metrics.get("logreg_test_roc_auc")
        summary.base_rate_auc = metrics.get("base_rate_test_roc_auc")
    if sandbox is not None:
        summary.sandbox_writes = len(
            [w for w in sandbox.admin.writes() if 200 <= int(w.get("status", 0)) < 300]
        )
    return summary


def print_summary(summary: DemoSummary, console: Console) -> None:
    """Print the summary and what to run next."""

    def auc(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(title="nextbest demo summary", show_header=False)
    table.add_column("figure")
    table.add_column("value")
    table.add_row("users", f"{summary.users:,}")
    table.add_row("events", f"{summary.events:,}")
    table.add_row("sessions", f"{summary.sessions:,}")
    table.add_row(f"converted within {summary.window_days} days", f"{summary.converters:,}")
    table.add_row(
        "test ROC-AUC (model / logistic regression / base rate)",
        f"{auc(summary.model_auc)} / {auc(summary.logreg_auc)} / {auc(summary.base_rate_auc)}",
    )
    # Goal, action and user names come from the data: printed as given, never as rich markup.
    goal = escape(summary.goal)
    table.add_row(f"champion of nextbest-{goal}", f"version {summary.champion_version}")
    table.add_row("users with a next best action", f"{summary.recommended_users:,}")
    table.add_row("contacts written to Intercom", f"{summary.contacts_written:,}")
    if summary.sandbox_writes is not None:
        table.add_row("attribute writes the sandbox received", f"{summary.sandbox_writes:,}")
    table.add_row("failed write attempts", f"{summary.write_failures:,}")
    console.print(table)
    top = Table(title="most recommended next actions")
    top.add_column("action")
    top.add_column("users", justify="right")
    for action, count in summary.top_actions:
        top.add_row(escape(str(action)), f"{count:,}")
    console.print(top)
    console.print("next:")
    console.print("  make ui                      # Dagster, MLflow and the sandbox in the browser")
    if summary.example_user:
        user = escape(str(summary.example_user))
        console.print(f"  .venv/bin/nextbest user {user}   # one user's story")
    console.print("  make test                    # the test suite")


def half_set_credentials(settings: Settings) -> str | None:
    """Why the run cannot start when only one of the two services has credentials, else None.

    The sandbox stands in for both or neither: with only an Intercom token the Stripe assets
    would fail after the Intercom reads, and with only a Stripe key it would be ignored.
    """
    token, key = bool(settings.intercom_access_token), bool(settings.stripe_api_key)
    if token == key:
        return None
    given, missing = (
        ("INTERCOM_ACCESS_TOKEN", "STRIPE_API_KEY")
        if token
        else ("STRIPE_API_KEY", "INTERCOM_ACCESS_TOKEN")
    )
    return (
        f"{given} is set but {missing} is not: export both to read your Intercom and Stripe,"
        f" or unset {given} to run on the sandbox"
    )


def failure_reasons(result) -> dict[str, str]:
    """Each failed step and the first line of the error it raised, in the order they failed.

    Dagster wraps the error an asset raised in its own. The asset's error, not its cause,
    is the one that names the stream, the request and the reason: a Stripe stream's error
    says which request failed and that its cursor stayed, the SDK's only which key.
    """
    reasons: dict[str, str] = {}
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        error = event.step_failure_data.error
        while error is not None and error.cls_name.startswith("Dagster") and error.cause:
            error = error.cause
        lines = (error.message if error is not None else "").strip().splitlines()
        reasons[event.step_key] = lines[0] if lines else "no error message"
    return reasons


def quiet_library_notices() -> None:
    """Keep the libraries' notices about their own APIs out of the demo's output.

    Loading the definitions makes Dagster flag the APIs it has superseded or still calls beta,
    and MLflow a pyfunc without type hints: five warnings with source lines before the first
    stage logs, which say nothing about the run and read as errors. Only the demo's process
    filters them; `dagster dev` and the tests still show them.
    """
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # MLflow warns when the pyfunc class is defined, under a filter of its own that a filter
    # here cannot override: the module is imported first, its warnings caught, and any but
    # that one shown.
    with warnings.catch_warnings(record=True) as caught:
        import ml.registry  # noqa: F401
    for warning in caught:
        if "Add type hints to the `predict` method" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def run_demo(console: Console) -> int:
    """Run the whole pipeline through the Dagster instance and print the summary.

    Returns:
        The process exit code: 0 when every stage succeeded.
    """
    from sandbox.datasets import DatasetError

    settings = get_settings()
    refused = half_set_credentials(settings) or unknown_dataset(settings)
    if refused:
        console.print(f"[red]{escape(refused)}[/red]", soft_wrap=True)
        return 1
    try:
        return _run(settings, console)
    except DatasetError as error:
        # The dataset could not be loaded (not downloaded, not readable): one line, no trace.
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        return 1


def unknown_dataset(settings: Settings) -> str | None:
    """Why the sandbox cannot serve NEXTBEST_DATASET, or None (also with credentials set)."""
    from sandbox.runner import DATASETS

    # events_file needs a file and its columns, which only `nextbest sandbox serve` takes.
    served = [name for name in DATASETS if name != "events_file"]
    if not settings.uses_sandbox or settings.dataset in served:
        return None
    return (
        f"NEXTBEST_DATASET={settings.dataset!r} is not a dataset the demo serves: choose one of"
        f" {', '.join(served)}; for your own file, see `nextbest sandbox serve --events`"
    )


def _run(settings: Settings, console: Console) -> int:
    import dagster as dg

    quiet_library_notices()
    from orchestration.activation.jobs import full_refresh_config
    from orchestration.definitions import defs

    settings.prepare_home()
    if settings.warehouse.exists():
        from orchestration.warehouse import connect

        # DuckDB lets one process write the file: a holder (`dagster dev`'s run, another demo)
        # is named now, in one line, rather than by every asset of the run failing on it.
        connect(settings.warehouse).close()
    console.print(f"[bold]nextbest demo[/bold]: home {settings.home.resolve()}")
    started = time.monotonic()
    with _sources(settings, console) as sandbox:
        definitions = defs()
        job = definitions.resolve_job_def(JOB_NAME)
        console.print(
            f"materializing job {JOB_NAME} ({len(definitions.resolve_all_asset_keys())}"
            " assets) through the Dagster instance in the home folder"
        )
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                # The job's own config (a full re-read) plus a console log at INFO, so the
                # stages' numbers show without Dagster's debug events.
                run_config={
                    **full_refresh_config(),
                    "loggers": {"console": {"config": {"log_level": "INFO"}}},
                },
            )
        seconds = time.monotonic() - started
        if not result.success:
            reasons = failure_reasons(result)
            console.print(
                f"[red]run {result.run_id} failed after {seconds:.0f} s[/red];"
                f" failed steps: {', '.join(reasons) or 'see the log above'}"
            )
            for step, reason in reasons.items():
                console.print(f"  {step}: {reason}", markup=False, soft_wrap=True)
            return 1
        console.print(f"run {result.run_id} succeeded in {seconds:.0f} s")
        summary = read_summary(settings, result.run_id, sandbox)
    print_summary(summary, console)
    return 0
