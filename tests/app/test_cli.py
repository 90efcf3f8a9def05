"""The `nextbest` command line: settings shown without secrets, a busy warehouse explained."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from tests.conftest import ROOT


def test_settings_masks_passwords_inside_uris(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/deploy.md exports the MLflow backend store as a URI with its password in it.
    monkeypatch.setenv(
        "NEXTBEST_MLFLOW_BACKEND_STORE_URI",
        "postgresql+psycopg2://nextbest:pw-in-uri@127.0.0.1:5432/mlflow",
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ops:tok-in-uri@mlflow.internal:443")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "pw-in-variable")
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", "token-in-variable")
    # Wide enough that no cell is cut, so what is absent was not printed at all.
    monkeypatch.setenv("COLUMNS", "400")

    result = CliRunner().invoke(app, ["settings"])

    assert result.exit_code == 0, result.output
    for secret in ("pw-in-uri", "tok-in-uri", "pw-in-variable", "token-in-variable"):
        assert secret not in result.output
    # The rest of each URI stays readable: which user, host and database are set.
    assert "postgresql+psycopg2://nextbest:***@127.0.0.1:5432/mlflow" in result.output
    assert "https://ops:***@mlflow.internal:443" in result.output


def test_settings_shows_the_paths_derived_from_the_home_as_init_prints_them(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")

    settings = CliRunner().invoke(app, ["settings"])
    init = CliRunner().invoke(app, ["init"])

    assert settings.exit_code == 0, settings.output
    current = _current_values(settings.output)
    # Worked out from the home alone: its documented defaults (README settings table).
    home = nextbest_home.resolve()
    assert current["NEXTBEST_WAREHOUSE"] == str(home / "warehouse.duckdb")
    assert current["DAGSTER_HOME"] == str(home / "dagster")
    assert current["MLFLOW_TRACKING_URI"] == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert f"warehouse: {current['NEXTBEST_WAREHOUSE']}" in init.output
    assert f"DAGSTER_HOME: {current['DAGSTER_HOME']}" in init.output
    assert f"MLflow: {current['MLFLOW_TRACKING_URI']}" in init.output


def test_settings_shows_a_set_path_variable_as_given(
    nextbest_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))

    result = CliRunner().invoke(app, ["settings"])

    assert _current_values(result.output)["NEXTBEST_WAREHOUSE"] == str(
        tmp_path / "elsewhere.duckdb"
    )


def _current_values(output: str) -> dict[str, str]:
    """Variable to its "current" cell in the settings table, folded lines joined back."""
    current: dict[str, str] = {}
    variable = ""
    for line in output.splitlines():
        cells = line.split("│")
        if len(cells) != 6:
            continue
        if cells[1].strip():
            variable = cells[1].strip()
        current[variable] = current.get(variable, "") + cells[3].strip()
    return current


def test_settings_at_80_columns_cut_no_name_or_value_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "a-home-folder-with-a-name-longer-than-any-column-of-the-table"
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "80")

    result = CliRunner().invoke(app, ["settings"])

    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    # The NEXTBEST_HOME row and the lines folded under it, up to the next variable.
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("│ NEXTBEST_HOME "))
    row = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("│ ") or line.split("│")[1].strip():
            break
        row.append(line)
    cells = [line.split("│") for line in row]
    assert max(len(line) for line in lines) <= 80
    assert "".join(cell[3].strip() for cell in cells) == str(home)
    assert "".join(cell[2].strip() for cell in cells) == "<checkout>/.nextbest"


def test_a_warehouse_held_by_another_process_is_one_clear_line_not_a_traceback(
    nextbest_home: Path,
) -> None:
    nextbest_home.mkdir(parents=True)
    warehouse = nextbest_home / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(warehouse)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        # The demo's dataset small, should it get as far as loading one.
        env = {
            **os.environ,
            "COLUMNS": "400",
            "NEXTBEST_DATASET": "synthetic",
            "NEXTBEST_SANDBOX_USERS": "50",
        }
        commands = (["user", "u1"], ["import-events", str(nextbest_home / "any.csv")], ["demo"])
        for command in commands:
            done = subprocess.run(
                [sys.executable, "-m", "orchestration.cli", *command],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=120,
            )
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr and "╭" not in done.stderr
            lines = done.stderr.strip().splitlines()
            # DuckDB's own line names the file and the process that holds it.
            assert f'lock on file "{warehouse}"' in lines[0]
            assert f"(PID {holder.pid})" in lines[0]
            assert lines[1].startswith("The warehouse is in use")
            # Refused before anything starts: no sandbox, no run.
            assert "sandbox" not in done.stdout and "materializing" not in done.stdout
    finally:
        holder.kill()
        holder.wait()


# Opens the warehouse for writing, as a Dagster run does, and keeps it until killed.
_HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(300)
"""


def test_import_events_help_names_every_column_a_file_column_can_map_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The five names docs/ingestion.md gives first for each accepted column.
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["import-events", "--help"])
    assert result.exit_code == 0
    assert (
        "FILE_COLUMN=NAME, NAME one of external_id, contact_id, email, event_name, created_at"
        in " ".join(result.output.split())
    )


def test_ui_on_a_busy_port_names_the_port_and_how_to_choose_another(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from orchestration.ui import run_ui

    with socket.socket() as taken, socket.socket() as free_probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free_probe.bind(("127.0.0.1", 0))
        free = free_probe.getsockname()[1]
        monkeypatch.setenv("NEXTBEST_SANDBOX_PORT", str(free))
        console = Console(record=True, width=400)
        # The Dagster port is the busy one; nothing is started before the check.
        assert run_ui(console, busy, free) == 1
    printed = console.export_text()
    assert f"port(s) [{busy}] already in use" in printed
    assert "--dagster-port, --mlflow-port and NEXTBEST_SANDBOX_PORT" in printed


def _unused_port() -> int:
    """A loopback port nothing listens on at the time of the call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Supervises one child, given as Python code (argv 2), on a port (argv 1), as `nextbest ui`
# does its three services.
_SUPERVISE = """
import os, sys
from rich.console import Console
from orchestration.ui import supervise
port, child = sys.argv[1], sys.argv[2]
code = supervise(Console(width=200), [("child", [sys.executable, "-c", child, port], int(port))],
                 dict(os.environ))
print("exit", code, flush=True)
"""


def _start_supervisor(
    port: int, child: str, **popen: Any
) -> tuple[subprocess.Popen[str], list[str]]:
    """Starts `_SUPERVISE` over `child` and reads its output up to the line on how to stop it."""
    supervisor = subprocess.Popen(
        [sys.executable, "-u", "-c", _SUPERVISE, str(port), child],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **popen,
    )
    lines: list[str] = []
    try:
        assert supervisor.stdout is not None
        while not lines or "press Ctrl-C" not in lines[-1]:
            line = supervisor.stdout.readline()
            assert line, f"supervisor ended early: {lines}"
            lines.append(line)
    except BaseException:
        supervisor.kill()
        raise
    return supervisor, lines


# Listens on the port and prints its PID.
_CHILD = """
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("child", os.getpid(), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_ui_stopped_by_kill_or_a_closed_terminal_stops_its_services_too(signum: int) -> None:
    port = _unused_port()
    supervisor, lines = _start_supervisor(port, _CHILD)
    child = None
    try:
        child = int(next(line for line in lines if line.startswith("child ")).split()[1])
        supervisor.send_signal(signum)
        rest = supervisor.communicate(timeout=30)[0]
        # Handled like Ctrl-C: a clean exit after stopping the child, whose port is free again.
        assert supervisor.returncode == 0, rest
        assert "stopping" in rest and "exit 0" in rest
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
    finally:
        supervisor.kill()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize(
    ("given", "missing"),
    [("INTERCOM_ACCESS_TOKEN", "STRIPE_API_KEY"), ("STRIPE_API_KEY", "INTERCOM_ACCESS_TOKEN")],
)
@pytest.mark.parametrize("command", [["demo"], ["ui", "--dagster-port", "1", "--mlflow-port", "1"]])
def test_demo_and_ui_with_one_service_s_credentials_name_the_missing_one_and_start_nothing(
    nextbest_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    given: str,
    missing: str,
) -> None:
    monkeypatch.setenv(given, "a-credential")
    monkeypatch.setenv("COLUMNS", "400")

    result = CliRunner().invoke(app, command)

    assert result.exit_code == 1, result.output
    assert f"{given} is set but {missing} is not" in result.output
    # Refused before anything started: not even the home folder was created.
    assert not nextbest_home.exists()


@pytest.mark.parametrize("command", [["demo"], ["ui", "--dagster-port", "1", "--mlflow-port", "1"]])
def test_demo_and_ui_on_an_unknown_dataset_list_the_ones_they_serve_and_start_nothing(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("NEXTBEST_DATASET", "simple-shop")
    monkeypatch.setenv("COLUMNS", "400")

    result = CliRunner().invoke(app, command)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert (
        "NEXTBEST_DATASET='simple-shop' is not a dataset the demo serves: choose one of"
        " simple_shop, mobile_onboarding_2018, synthetic;" in result.output
    )
    assert not nextbest_home.exists()


def test_ui_reports_a_service_that_exits_before_opening_its_port_without_waiting() -> None:
    from rich.console import Console

    from orchestration.ui import supervise

    port = _unused_port()
    console = Console(record=True, width=400)
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    started = time.monotonic()

    assert supervise(console, [("sandbox", failing, port)], dict(os.environ)) == 1

    # Told at once (the wait for a port is 120 s), with the exit code.
    assert time.monotonic() - started < 30
    assert f"sandbox exited with code 3 before opening port {port}" in console.export_text()


def test_demo_offline_on_first_run_says_what_it_could_not_download_in_one_line(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox.datasets

    closed = _unused_port()
    # Nothing listens there: a connection refused, as offline.
    monkeypatch.setattr(
        sandbox.datasets, "PYPI_SIMPLE_URL", f"http://127.0.0.1:{closed}/simple/retentioneering/"
    )
    monkeypatch.setenv("COLUMNS", "400")

    result = CliRunner().invoke(app, ["demo"])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "╭" not in result.output
    said = " ".join(result.output.split())
    assert "error: simple_shop could not be downloaded (ConnectError:" in said
    assert f"from http://127.0.0.1:{closed}/simple/retentioneering/" in said
    cached = nextbest_home / "datasets" / "simple_shop" / "simple-onlineshop.csv"
    assert f"the first run needs PyPI, later ones read {cached}" in said
    # Said before the download starts, so a slow one is not taken for a hang.
    assert said.index("downloading simple_shop from PyPI, once") < said.index("error:")


# A supervisor whose SIGINT is ignored, as `make ui &` from a script leaves it; its child says
# whether Ctrl-C would reach it.
_CHILD_SIGINT = """
import os, signal, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("child sigint default:", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
      flush=True)
time.sleep(300)
"""


def test_ui_services_can_be_interrupted_even_when_ui_was_started_ignoring_sigint() -> None:
    port = _unused_port()
    supervisor, lines = _start_supervisor(
        port, _CHILD_SIGINT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    try:
        supervisor.send_signal(signal.SIGTERM)
        rest = supervisor.communicate(timeout=30)[0]
    finally:
        supervisor.kill()
    assert "child sigint default: True" in "".join(lines), lines
    assert supervisor.returncode == 0, rest


@pytest.mark.parametrize("option", ["--dagster-port", "--mlflow-port"])
@pytest.mark.parametrize(
    ("port", "bound"),
    [
        ("-5", "greater than or equal to 1"),
        ("0", "greater than or equal to 1"),
        ("65536", "less than or equal to 65535"),
        ("70000", "less than or equal to 65535"),
    ],
)
def test_ui_refuses_a_port_outside_1_to_65535_in_one_line(
    option: str, port: str, bound: str
) -> None:
    result = CliRunner().invoke(app, ["ui", option, port])
    output = " ".join(result.output.replace("│", " ").split())

    assert result.exit_code == 2, output
    assert f"Invalid value for '{option}'" in output
    assert bound in output
    assert "Traceback" not in output
    assert not isinstance(result.exception, OverflowError)


@pytest.mark.parametrize(
    ("variable", "under", "args"),
    [
        ("NEXTBEST_WAREHOUSE", "wh.duckdb", ["import-events", "EXPORT"]),
        ("NEXTBEST_HOME", "home", ["init"]),
        ("NEXTBEST_HOME", "home", ["import-events", "EXPORT"]),
    ],
)
def test_a_path_setting_under_a_file_is_one_line_naming_the_variable_and_the_file(
    nextbest_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    under: str,
    args: list[str],
) -> None:
    # A folder cannot be made inside a regular file: mkdir fails with "File exists".
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    monkeypatch.setenv(variable, str(blocker / under))
    export = tmp_path / "e.csv"
    export.write_text("user_id,event_name,created_at\nu1,a,1704067200\n")
    args = [str(export) if a == "EXPORT" else a for a in args]
    nextbest = Path(sys.executable).parent / "nextbest"

    done = subprocess.run(
        [str(nextbest), *args], capture_output=True, text=True, env=os.environ | {"COLUMNS": "400"}
    )
    output = " ".join((done.stdout + done.stderr).split())

    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert variable in output
    assert f"{blocker} is a file, not a folder" in output
    assert blocker.read_text() == "a file, not a folder\n"
