"""Settings of nextbest, read from environment variables when asked for, never at import.

Every setting has one environment variable; `nextbest settings` prints the table that the
README documents. Local state lives under one home folder, `NEXTBEST_HOME`.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the folder holding `dbt_project.yml`."""

INTERCOM_REGION_HOSTS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}

_HTTP_URL = TypeAdapter(HttpUrl)


class Settings(BaseSettings):
    """All settings of nextbest; each field is read from the variable in its alias."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class:
    # read as given, `NEXTBEST_WAREHOUSE=` would be the working directory, `INTERCOM_ACCESS_TOKEN=`
    # a token of no characters, and every number a type error.
    # The credentials are validated too: an error must not print what was given for them.
    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    home: Path = Field(
        default=PROJECT_ROOT / ".nextbest",
        alias="NEXTBEST_HOME",
        description="Folder for all local state: warehouse, Dagster, MLflow, dataset cache.",
    )
    warehouse_path: Path | None = Field(
        default=None,
        alias="NEXTBEST_WAREHOUSE",
        description="DuckDB warehouse file. Default: $NEXTBEST_HOME/warehouse.duckdb.",
    )
    dagster_home: Path | None = Field(
        default=None,
        alias="DAGSTER_HOME",
        description="Dagster instance folder. Default: $NEXTBEST_HOME/dagster (SQLite storage).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking store. Default: SQLite at $NEXTBEST_HOME/mlflow/mlflow.db.",
    )
    dataset: str = Field(
        default="simple_shop",
        alias="NEXTBEST_DATASET",
        description="Sandbox dataset when no credentials are set.",
    )
    sandbox_port: int = Field(
        default=8765,
        alias="NEXTBEST_SANDBOX_PORT",
        ge=0,
        le=65535,
        description="Port of the local sandbox.",
    )
    intercom_access_token: str | None = Field(
        default=None,
        alias="INTERCOM_ACCESS_TOKEN",
        description="Intercom access token. Unset or empty: the sandbox is used.",
        repr=False,
    )
    intercom_region: Literal["us", "eu", "au"] = Field(
        default="us", alias="INTERCOM_REGION", description="Intercom data region: us, eu or au."
    )
    intercom_base_url: str | None = Field(
        default=None,
        alias="INTERCOM_BASE_URL",
        description="Overrides the region's Intercom host (the sandbox sets this).",
    )
    stripe_api_key: str | None = Field(
        default=None,
        alias="STRIPE_API_KEY",
        description="Stripe secret or restricted key. Unset or empty: the sandbox is used.",
        repr=False,
    )
    stripe_base_url: str | None = Field(
        default=None,
        alias="STRIPE_BASE_URL",
        description="Overrides Stripe's API host (the sandbox sets this).",
    )
    conversion_window_days: int = Field(
        default=7,
        alias="NEXTBEST_CONVERSION_WINDOW_DAYS",
        ge=1,
        # As a goal's window_days; dbt writes one select per day of the window.
        le=365,
        description="Days after sign-up within which a first payment counts as converting.",
    )
    session_gap_minutes: int = Field(
        default=30,
        alias="NEXTBEST_SESSION_GAP_MINUTES",
        ge=1,
        # A year: beyond it every journey is one session anyway.
        le=525_600,
        description="Inactivity that ends a session.",
    )

    @field_validator("intercom_access_token", "stripe_api_key")
    @classmethod
    def _credential(cls, value: str | None) -> str | None:
        # Tokens and keys hold no white space: a pasted one with a space or line break would be
        # sent as is and every request answered 401; one of blanks alone would not mean unset.
        if value is not None:
            spaces = sum(character.isspace() for character in value)
            if spaces:
                raise ValueError(
                    f"holds {spaces} white-space character(s) in {len(value)}; a token has none "
                    "(a copy-paste slip? unset it to use the sandbox)"
                )
        return value

    @field_validator("intercom_base_url", "stripe_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Refused here, naming the variable; the clients would otherwise retry a URL that can
        # never answer and report only a connection error.
        if value:
            try:
                _HTTP_URL.validate_python(value)
            except ValidationError as error:
                problem = error.errors()[0]["msg"]
                raise ValueError(f"not an http(s) URL with a host ({problem})") from None
        return value

    @cached_property
    def warehouse(self) -> Path:
        """Path of the DuckDB warehouse file."""
        return (self.warehouse_path or self.home / "warehouse.duckdb").resolve()

    @cached_property
    def dagster_home_dir(self) -> Path:
        """Folder of the Dagster instance."""
        return (self.dagster_home or self.home / "dagster").resolve()

    @cached_property
    def mlflow_dir(self) -> Path:
        """Folder of the local MLflow store and its artifacts."""
        return (self.home / "mlflow").resolve()

    @cached_property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the variable if set, else a SQLite store under the home."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @cached_property
    def cache_dir(self) -> Path:
        """Folder where downloaded datasets are cached."""
        return (self.home / "datasets").resolve()

    @property
    def uses_sandbox(self) -> bool:
        """True when no Intercom credentials are set, so the local sandbox stands in."""
        return not self.intercom_access_token

    @property
    def intercom_url(self) -> str:
        """Base URL of the Intercom API to talk to."""
        return self.intercom_base_url or INTERCOM_REGION_HOSTS[self.intercom_region]

    def prepare_home(self) -> None:
        """Create the home folder and export the variables the tools read.

        Dagster, dbt and MLflow read their own variables; exporting them here makes the
        child processes (dbt, `dagster dev`) agree with this process on every path.
        """
        home = "NEXTBEST_HOME"
        for folder, variable in (
            (self.home, home),
            (self.dagster_home_dir, "DAGSTER_HOME" if self.dagster_home else home),
            (self.mlflow_dir, home),
            (self.cache_dir, home),
            (self.warehouse.parent, "NEXTBEST_WAREHOUSE" if self.warehouse_path else home),
        ):
            make_folder(folder, variable)
        instance_yaml = self.dagster_home_dir / "dagster.yaml"
        if not instance_yaml.exists():
            # SQLite storage is Dagster's default; the file only turns telemetry off.
            instance_yaml.write_text("telemetry:\n  enabled: false\n")
        os.environ["NEXTBEST_HOME"] = str(self.home.resolve())
        os.environ["NEXTBEST_WAREHOUSE"] = str(self.warehouse)
        os.environ["DAGSTER_HOME"] = str(self.dagster_home_dir)
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri


class FolderError(RuntimeError):
    """A folder a path setting needs cannot be created; the message names the variable."""


def make_folder(folder: Path, variable: str) -> None:
    """Create `folder` and its parents for the path that `variable` sets.

    Raises:
        FolderError: A file stands where a folder must be, or the system refuses the folder.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocker = next(
            (p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None
        )
        reason = f"{blocker} is a file, not a folder" if blocker else error.strerror
        raise FolderError(f"{variable}: cannot create the folder {folder}: {reason}") from error


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    return Settings()


# Every settings class of the project, as "module:Class". Stages keep their own classes beside
# their code; this list is how the CLI and the README find them all.
SETTINGS_CLASSES = [
    "orchestration.settings:Settings",
    "orchestration.ingest.settings:IngestSettings",
    "orchestration.transform.settings:TransformSettings",
    "orchestration.models.settings:MLSettings",
    "orchestration.activation.settings:ActivationSettings",
    "sandbox.settings:SandboxSettings",
    "deploy.settings:DeploySettings",
]


def settings_classes() -> list[type[BaseSettings]]:
    """Import and return every settings class named in `SETTINGS_CLASSES`."""
    import importlib

    classes = []
    for spec in SETTINGS_CLASSES:
        module, _, name = spec.partition(":")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def settings_table() -> list[tuple[str, str, str]]:
    """Rows of (variable, default, description) for every setting, for docs and the CLI."""
    rows = []
    fields = [f for cls in settings_classes() for f in cls.model_fields.values()]
    for field in fields:
        default = field.default
        if isinstance(default, Path) and default.is_relative_to(PROJECT_ROOT):
            # Show paths inside the checkout relative to it: the table is for every machine.
            default = f"<checkout>/{default.relative_to(PROJECT_ROOT)}"
        rows.append((field.alias or "", "" if default is None else str(default), field.description))
    return rows
