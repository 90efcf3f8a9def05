"""The `nextbest` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sandbox.cli import app as sandbox_app

# What was given for these is never printed, even when it is refused.
_SECRET_VARIABLES = frozenset({"INTERCOM_ACCESS_TOKEN", "STRIPE_API_KEY"})


class _App(typer.Typer):
    """The command line, reporting a bad setting or a busy warehouse in a line, not a traceback.

    A bad setting: a value of the wrong type, a warehouse that is no DuckDB file, a path
    where a file stands in the way of a folder.
    """

    def __call__(self, *args: object, **kwargs: object) -> object:
        import duckdb
        from pydantic import ValidationError

        from orchestration.settings import FolderError
        from orchestration.warehouse import NotAWarehouse

        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as error:
            for problem in error.errors():
                variable = ".".join(str(part) for part in problem["loc"])
                given = "" if variable in _SECRET_VARIABLES else f"={problem.get('input')!r}"
                Console(stderr=True).print(
                    f"[red]setting {variable}{given}: {problem['msg']}[/red]", markup=True
                )
            raise SystemExit(1) from None
        except (NotAWarehouse, FolderError) as error:
            Console(stderr=True).print(str(error), markup=False, soft_wrap=True)
            raise SystemExit(1) from None
        except duckdb.IOException as error:
            # DuckDB lets one process write the file; its message names that process's PID.
            if "Could not set lock" not in str(error):
                raise
            Console(stderr=True).print(
                f"{error}\nThe warehouse is in use: wait for that run to end or stop it "
                "(`dagster dev`, `make demo`, another `nextbest` command), then try again.",
                markup=False,
                soft_wrap=True,
            )
            raise SystemExit(1) from None


app = _App(
    help="nextbest: next best actions for SaaS onboarding, from Intercom and Stripe.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(sandbox_app, name="sandbox")
console = Console()


@app.command("settings")
def show_settings(
    markdown: bool = typer.Option(False, help="Print the table as Markdown, for the README."),
    env_example: bool = typer.Option(False, help="Print a commented .env.example."),
) -> None:
    """Print every setting, its environment variable, default and current value."""
    from orchestration.settings import Settings, settings_classes, settings_table

    if markdown and env_example:
        raise typer.BadParameter("choose one of --markdown and --env-example, not both")
    if markdown:
        console.print("| variable | default | meaning |\n| --- | --- | --- |", soft_wrap=True)
        for variable, default, meaning in settings_table():
            shown = f"`{default}`" if default else ""
            console.print(f"| `{variable}` | {shown} | {meaning} |", soft_wrap=True, markup=False)
        return
    if env_example:
        console.print("# nextbest settings, all read from the environment: export the ones you")
        console.print("# change (e.g. `set -a; . ./my.env; set +a`). Unset ones, and ones set to")
        console.print("# nothing (`NAME=`), take the default shown; with no Intercom or Stripe")
        console.print("# credentials the sandbox stands in.\n")
        for variable, default, meaning in settings_table():
            console.print(f"# {meaning}\n# {variable}={default}\n", soft_wrap=True, markup=False)
        return

    from deploy.mlflow_server import redacted

    rows = settings_table()
    # Cells fold rather than end in an ellipsis, which would cut a name or a path short, and
    # the names get the largest share of the width, so most stay on one line and can be grepped.
    table = Table(title="nextbest settings", expand=True)
    for column, ratio in (("variable", 4), ("default", 2), ("current", 2), ("meaning", 3)):
        table.add_column(column, overflow="fold", ratio=ratio)
    values: dict[str, object] = {}
    for cls in settings_classes():
        instance = cls()
        values |= instance.model_dump(by_alias=True)
        if isinstance(instance, Settings):
            # Unset, these three follow NEXTBEST_HOME; the path they resolve to is the one
            # `nextbest init` prints and every command uses, so that is the current value.
            derived = {
                "NEXTBEST_WAREHOUSE": instance.warehouse,
                "DAGSTER_HOME": instance.dagster_home_dir,
                "MLFLOW_TRACKING_URI": instance.tracking_uri,
            }
            values |= {name: value for name, value in derived.items() if values[name] is None}
    for variable, default, meaning in rows:
        value = values.get(variable)
        shown = "" if value is None else str(value)
        if variable in _SECRET_VARIABLES and value:
            shown = "(set)"
        # A database or tracking URI may carry its password (docs/deploy.md writes them so).
        table.add_row(variable, default, redacted(shown) if "://" in shown else shown, meaning)
    console.print(table)


@app.command("init")
def init_home() -> None:
    """Create the home folder and the Dagster instance in it."""
    from orchestration.settings import get_settings

    settings = get_settings()
    settings.prepare_home()
    console.print(f"home: {settings.home.resolve()}", markup=False)
    console.print(f"warehouse: {settings.warehouse}", markup=False)
    console.print(f"DAGSTER_HOME: {settings.dagster_home_dir}", markup=False)
    console.print(f"MLflow: {settings.tracking_uri}", markup=False)


@app.command("demo")
def demo() -> None:
    """Materialize the whole asset graph on the embedded default and print a summary."""
    from orchestration.demo import run_demo

    raise typer.Exit(run_demo(console))


@app.command("user")
def user(
    ident: str = typer.Argument(help="App user id, Intercom external id or Intercom contact id."),
    goal: str = typer.Option(None, help="Goal whose recommendation to show; default the primary."),
) -> None:
    """One user's story: profile, journey, completed actions, score and recommendations."""
    from orchestration.settings import get_settings
    from orchestration.user_story import UnknownUserError, load_story, render_story
    from orchestration.warehouse import connect

    settings = get_settings()
    if not settings.warehouse.exists():
        where = escape(str(settings.warehouse))
        console.print(f"[red]no warehouse at {where}[/red]: run `make demo` first")
        raise typer.Exit(1)
    with connect(settings.warehouse, read_only=True) as con:
        try:
            story = load_story(con, ident, goal, primary=_primary_goal())
        except (UnknownUserError, RuntimeError) as error:
            # The message quotes the id as typed: no markup is read from it.
            console.print(f"[red]{escape(str(error))}[/red]")
            raise typer.Exit(1) from error
    render_story(story, console)


def _primary_goal() -> str | None:
    """The goals file's primary goal, or None when the file cannot be read (then any goal)."""
    from ml.goals import GoalError, load_goals, primary_goal
    from orchestration.models.settings import MLSettings

    try:
        return primary_goal(load_goals(MLSettings().goals_file)).name
    except (GoalError, OSError):
        return None


@app.command("ui")
def ui(
    dagster_port: int = typer.Option(3000, min=1, max=65535, help="Port of the Dagster UI."),
    mlflow_port: int = typer.Option(5000, min=1, max=65535, help="Port of the MLflow UI."),
) -> None:
    """Start the sandbox, the Dagster UI and the MLflow UI; Ctrl-C stops all three."""
    from orchestration.ui import run_ui

    raise typer.Exit(run_ui(console, dagster_port, mlflow_port))


@app.command("import-events")
def import_events(
    file: Annotated[Path, typer.Argument(help="Export of events: CSV, or JSON lines (.jsonl).")],
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="Map a column of the file, once per column: FILE_COLUMN=NAME, NAME one of "
            "external_id, contact_id, email, event_name, created_at.",
        ),
    ] = None,
) -> None:
    """Load an export of older Intercom events into the warehouse, de-duplicated."""
    from orchestration.ingest.import_events import run_cli

    raise typer.Exit(run_cli(file, column or [], console))


if __name__ == "__main__":  # pragma: no cover - `python -m orchestration.cli`
    app()
