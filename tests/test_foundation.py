"""The ground every stage stands on: settings, the Dagster entry point, dbt and the bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ROOT

if TYPE_CHECKING:
    from orchestration.settings import Settings

BIN = Path(sys.executable).parent


def _settings_with(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    """The settings read with `variables` set in the environment."""
    from orchestration.settings import get_settings

    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    return get_settings()


def test_every_local_path_lives_under_the_home_folder(nextbest_home: Path) -> None:
    from orchestration.settings import get_settings

    settings = get_settings()
    assert settings.warehouse == (nextbest_home / "warehouse.duckdb").resolve()
    assert settings.dagster_home_dir == (nextbest_home / "dagster").resolve()
    assert settings.tracking_uri == f"sqlite:///{(nextbest_home / 'mlflow' / 'mlflow.db')}"
    assert settings.cache_dir == (nextbest_home / "datasets").resolve()
    assert settings.uses_sandbox


def test_a_variable_overrides_its_default(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.settings import get_settings

    monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(nextbest_home / "elsewhere.duckdb"))
    monkeypatch.setenv("INTERCOM_REGION", "eu")
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", "tok")
    monkeypatch.setenv("NEXTBEST_CONVERSION_WINDOW_DAYS", "14")
    settings = get_settings()
    assert settings.warehouse.name == "elsewhere.duckdb"
    assert settings.intercom_url == "https://api.eu.intercom.io"
    assert settings.conversion_window_days == 14
    assert not settings.uses_sandbox


def test_the_home_variable_is_not_mistaken_for_the_users_home(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.settings import get_settings

    monkeypatch.delenv("NEXTBEST_HOME")
    monkeypatch.setenv("HOME", "/nonexistent-user-home")
    assert get_settings().home == ROOT / ".nextbest"


def test_a_bad_setting_names_the_variable(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from orchestration.settings import get_settings

    monkeypatch.setenv("NEXTBEST_CONVERSION_WINDOW_DAYS", "seven")
    with pytest.raises(ValidationError, match="NEXTBEST_CONVERSION_WINDOW_DAYS"):
        get_settings()


@pytest.mark.parametrize(
    ("variable", "value", "spaces"),
    [("INTERCOM_ACCESS_TOKEN", "   ", 3), ("STRIPE_API_KEY", "sk_test_abc\n", 1)],
)
def test_a_credential_with_white_space_is_refused_naming_the_variable(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, spaces: int
) -> None:
    from pydantic import ValidationError

    from orchestration.settings import get_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        get_settings()
    message = str(raised.value)
    assert variable in message
    assert f"holds {spaces} white-space character(s) in {len(value)}" in message
    # The value is never printed: neither as pydantic quotes an input nor, for a key, its text.
    assert repr(value) not in message
    if value.strip():
        assert value.strip() not in message


def test_the_command_line_never_prints_a_refused_credential(nextbest_home: Path) -> None:
    env = os.environ | {"NEXTBEST_HOME": str(nextbest_home), "STRIPE_API_KEY": "sk_live_x y"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "settings"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "STRIPE_API_KEY" in done.stderr
    assert "sk_live" not in done.stderr + done.stdout


def test_an_empty_variable_means_unset_in_every_settings_class(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `NAME=` is what an uncommented .env.example line leaves; every class must read it as
    # unset, not fail on a number nor take a path, token or name of no characters.
    from orchestration.settings import settings_classes, settings_table

    variables = [variable for variable, _, _ in settings_table()]
    # One variable of each class the docs list, so the comparison below is never of nothing.
    assert {
        "NEXTBEST_WAREHOUSE",
        "NEXTBEST_INGEST_MAX_ATTEMPTS",
        "NEXTBEST_DBT_THREADS",
        "NEXTBEST_ML_SEED",
        "NEXTBEST_ACTIVATION_DRY_RUN",
        "NEXTBEST_SANDBOX_FAULTS",
        "DAGSTER_PG_PORT",
    } <= set(variables)
    for variable in variables:
        monkeypatch.delenv(variable, raising=False)
    unset = {cls.__name__: cls().model_dump() for cls in settings_classes()}
    assert len(unset) == 7
    for variable in variables:
        monkeypatch.setenv(variable, "")
    assert {cls.__name__: cls().model_dump() for cls in settings_classes()} == unset


def test_empty_paths_and_numbers_take_the_documented_defaults(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.transform.settings import TransformSettings

    settings = _settings_with(
        monkeypatch,
        NEXTBEST_WAREHOUSE="",
        NEXTBEST_CONVERSION_WINDOW_DAYS="",
        NEXTBEST_AS_OF="",
        NEXTBEST_DBT_THREADS="",
        NEXTBEST_SNAPSHOT_AFTER_EVERY_EVENT="",
    )
    # The README's defaults: $NEXTBEST_HOME/warehouse.duckdb, a 7-day window; no as-of time,
    # 2 dbt threads, no snapshot after every event.
    assert settings.warehouse == (nextbest_home / "warehouse.duckdb").resolve()
    assert settings.conversion_window_days == 7
    transform = TransformSettings()
    assert (transform.as_of, transform.dbt_threads) == (None, 2)
    assert transform.snapshot_after_every_event is False


def test_empty_credentials_mean_the_sandbox_not_an_empty_token(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.resources import MissingCredentials, intercom_endpoint, stripe_endpoint

    settings = _settings_with(monkeypatch, INTERCOM_ACCESS_TOKEN="", STRIPE_API_KEY="")
    assert settings.intercom_access_token is None
    assert settings.stripe_api_key is None
    assert settings.uses_sandbox
    # No client is ever built with an empty bearer token or key.
    with pytest.raises(MissingCredentials, match="INTERCOM_ACCESS_TOKEN is not set"):
        intercom_endpoint(settings)
    with pytest.raises(MissingCredentials, match="STRIPE_API_KEY is not set"):
        stripe_endpoint(settings)


def test_importing_the_definitions_reads_no_environment() -> None:
    # A setting that cannot be parsed fails whoever reads it; import must still succeed.
    env = os.environ | {"NEXTBEST_CONVERSION_WINDOW_DAYS": "seven", "INTERCOM_REGION": "mars"}
    code = "import orchestration.definitions, orchestration.cli, sandbox.cli; print('imported')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout


def test_prepare_home_creates_the_dagster_instance_and_exports_paths(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.settings import get_settings

    for variable in ("NEXTBEST_WAREHOUSE", "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    get_settings().prepare_home()
    assert (nextbest_home / "dagster" / "dagster.yaml").is_file()
    assert os.environ["DAGSTER_HOME"] == str((nextbest_home / "dagster").resolve())
    assert os.environ["NEXTBEST_WAREHOUSE"].endswith("home/warehouse.duckdb")


def test_dagster_validates_the_workspace(nextbest_home: Path) -> None:
    env = os.environ | {"DAGSTER_HOME": str(nextbest_home)}
    nextbest_home.mkdir(parents=True)
    done = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All code locations passed validation" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("variables", "adapter"),
    [
        ({}, "duckdb"),
        # Empty variables take the profile's defaults, as they do in the Python settings.
        ({"NEXTBEST_DBT_TARGET": ""}, "duckdb"),
        (
            {"NEXTBEST_DBT_TARGET": "postgres", "NEXTBEST_PG_PORT": "", "NEXTBEST_PG_HOST": ""},
            "postgres",
        ),
    ],
)
def test_dbt_parses_with_the_projects_profile(
    tmp_path: Path, variables: dict[str, str], adapter: str
) -> None:
    env = os.environ | {
        "NEXTBEST_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        **variables,
    }
    done = subprocess.run(
        [str(BIN / "dbt"), "parse", "--profiles-dir", "."],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["project_name"] == "nextbest"
    assert manifest["metadata"]["adapter_type"] == adapter


def test_the_bench_harness_writes_ratios_against_the_peer(tmp_path: Path) -> None:
    from bench.harness import Figure, run

    fig = Figure("x seconds", "s", 2.0, "peer", 8.0)
    assert fig.ratio == 0.25
    assert fig.advantage == 4.0
    higher = Figure("rate", "1/s", 2.0, "peer", 8.0, better="higher")
    assert higher.advantage == 0.25
    out = tmp_path / "bench.json"
    records = run(["event_log_load"], out)
    written = json.loads(out.read_text())
    assert written["figures"] == json.loads(json.dumps(records))
    first = written["figures"][0]
    assert first["machine_cores"] == os.cpu_count()
    assert first["ratio"] == pytest.approx(first["value"] / first["peer_value"])
    # 30,943 events is the documented size of the log (sandbox/datasets/.../README.md).
    assert first["note"] == "30,943 events"


def test_the_bench_harness_rejects_an_unknown_name(tmp_path: Path) -> None:
    from bench.harness import run

    with pytest.raises(KeyError, match="no_such_benchmark"):
        run(["no_such_benchmark"], tmp_path / "x.json")


@pytest.mark.parametrize("variable", ["INTERCOM_BASE_URL", "STRIPE_BASE_URL"])
@pytest.mark.parametrize("value", ["notaurl", "ftp://example.test", "http://", "127.0.0.1:8765"])
def test_a_base_url_that_is_not_http_names_the_variable(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from pydantic import ValidationError

    from orchestration.settings import get_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=f"{variable}\\n.*not an http\\(s\\) URL"):
        get_settings()


def test_a_sandbox_base_url_is_kept_as_given(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_with(
        monkeypatch, INTERCOM_BASE_URL="http://127.0.0.1:8765/intercom", STRIPE_BASE_URL=""
    )
    assert settings.intercom_url == "http://127.0.0.1:8765/intercom"
    # Empty is unset: Stripe's own host.
    assert settings.stripe_base_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NEXTBEST_SANDBOX_PORT", "99999"),
        ("DAGSTER_PG_PORT", "70000"),
        ("NEXTBEST_MLFLOW_PORT", "-1"),
        ("NEXTBEST_PG_PORT", "0"),
        # numpy refuses these seeds only when a model or the synthetic log is built.
        ("NEXTBEST_ML_SEED", "-1"),
        ("NEXTBEST_ML_SEED", str(2**32)),
        ("NEXTBEST_SANDBOX_SEED", "-5"),
        # time.sleep(inf) raises OverflowError in the middle of a sync.
        ("NEXTBEST_INGEST_SCROLL_BUSY_WAIT_SECONDS", "inf"),
        ("NEXTBEST_SUPPORT_FOCUS", "inf"),
    ],
)
def test_an_out_of_range_number_names_the_variable(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from pydantic import ValidationError

    from orchestration.settings import settings_classes

    monkeypatch.setenv(variable, value)
    owners = [
        cls
        for cls in settings_classes()
        if variable in {f.alias for f in cls.model_fields.values()}
    ]
    assert len(owners) == 1
    with pytest.raises(ValidationError, match=variable):
        owners[0]()
