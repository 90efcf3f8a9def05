"""`python -m deploy`: the commands of a production deployment."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Production helpers: PostgreSQL databases, the MLflow server, the dbt postgres target.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()


@app.command("init-db")
def init_db() -> None:
    """Create Dagster's and the warehouse's PostgreSQL databases when they are missing."""
    from deploy.postgres import ensure_database
    from deploy.settings import get_deploy_settings

    settings = get_deploy_settings()
    for role, dsn in (("dagster", settings.dagster_dsn()), ("warehouse", settings.warehouse_dsn())):
        created = ensure_database(dsn)
        state = "created" if created else "exists"
        console.print(f"{role}: {dsn['dbname']} on {dsn['host']}:{dsn['port']} ({state})")


@app.command("mlflow-server")
def mlflow_server(
    dry_run: bool = typer.Option(False, help="Print the command and exit without starting it."),
) -> None:
    """Start the MLflow tracking server on PostgreSQL with a local (or remote) artifact store."""
    from deploy.mlflow_server import exec_server, prepare, redacted, server_command
    from deploy.settings import get_deploy_settings

    settings = get_deploy_settings()
    # Quoted as a shell would need it, so the printed line can be pasted and run.
    command = shlex.join(redacted(part) for part in server_command(settings))
    console.print(command, soft_wrap=True, markup=False, highlight=False)
    if dry_run:
        return
    if prepare(settings):
        console.print("created the MLflow backend database")
    console.print(f"clients: export MLFLOW_TRACKING_URI={settings.mlflow_server_uri}")
    exec_server(settings)


@app.command("load-raw")
def load_raw(
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB file. Default: NEXTBEST_WAREHOUSE.")
    ] = None,
    schema: Annotated[str, typer.Option(help="Schema to copy.")] = "raw",
) -> None:
    """Copy the DuckDB raw layer into the PostgreSQL warehouse for the dbt postgres target."""
    from deploy.postgres import copy_schema, ensure_database
    from deploy.settings import get_deploy_settings
    from orchestration.settings import get_settings

    source = warehouse or get_settings().warehouse
    dsn = get_deploy_settings().warehouse_dsn()
    ensure_database(dsn)
    copied = copy_schema(source, dsn, schema)
    table = Table(title=f"{source} → {dsn['dbname']}.{schema}")
    for column in ("table", "rows", "seconds"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for item in copied:
        table.add_row(item.name, f"{item.rows:,}", f"{item.seconds:.2f}")
    console.print(table)


@app.command("sizing")
def sizing(
    users: Annotated[list[int], typer.Option(help="Sizes to measure (repeat the option).")],
    folder: Annotated[Path, typer.Option(help="Scratch folder, one sub-folder per size.")] = Path(
        ".nextbest/sizing"
    ),
) -> None:
    """Measure each stage's wall time and peak memory on synthetic journeys of these sizes."""
    from deploy.sizing import measure

    table = Table(title="nextbest sizing (synthetic journeys, this machine)")
    for column in ("users", "events", "snapshots", "warehouse MiB", "stage", "seconds", "peak MiB"):
        table.add_column(column, justify="right")
    for size in users:
        result = measure(size, folder / f"users{size}")
        for index, figure in enumerate(result.stages):
            volumes = (result.users, result.events, result.snapshots)
            head = [f"{n:,}" for n in volumes] + [f"{result.warehouse_mib:,.1f}"]
            if index:
                head = ["", "", "", ""]
            table.add_row(*head, figure.stage, f"{figure.seconds:,.1f}", f"{figure.peak_mib:,.0f}")
    console.print(table)


@app.command("sizing-stage", hidden=True)
def sizing_stage(stage: str, users: int, folder: Path) -> None:
    """Run one stage of the sizing measurement in this process."""
    from deploy.sizing import run_stage

    run_stage(stage, users, folder)


if __name__ == "__main__":  # pragma: no cover - `python -m deploy`
    app()
