"""Settings of a production deployment: PostgreSQL for Dagster, MLflow and the dbt warehouse.

Dagster reads the `DAGSTER_PG_*` variables itself (through `env:` in `deploy/dagster/dagster.yaml`)
and dbt reads the `NEXTBEST_PG_*` ones in `profiles.yml`; they are listed here so that
`nextbest settings` shows them beside the rest, and so that the helpers in `deploy` read the
same values.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestration.settings import get_settings

DEPLOY_DIR = Path(__file__).resolve().parent
"""The `deploy/` folder of the checkout."""

DAGSTER_HOME_TEMPLATE = DEPLOY_DIR / "dagster"
"""The folder holding the production `dagster.yaml`; point `DAGSTER_HOME` here or copy it."""


class DeploySettings(BaseSettings):
    """Where the production services keep their state."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class.
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    dagster_pg_host: str = Field(
        default="127.0.0.1",
        alias="DAGSTER_PG_HOST",
        description="PostgreSQL host of Dagster's run, event-log and schedule storage.",
    )
    dagster_pg_port: int = Field(
        default=5432,
        alias="DAGSTER_PG_PORT",
        ge=1,
        le=65535,
        description="PostgreSQL port for Dagster.",
    )
    dagster_pg_user: str = Field(
        default="postgres", alias="DAGSTER_PG_USER", description="PostgreSQL user for Dagster."
    )
    dagster_pg_password: SecretStr = Field(
        default=SecretStr(""),
        alias="DAGSTER_PG_PASSWORD",
        description="PostgreSQL password for Dagster (set it, even to any value under trust auth).",
    )
    dagster_pg_db: str = Field(
        default="dagster", alias="DAGSTER_PG_DB", description="Database of Dagster's storage."
    )
    mlflow_backend_store_uri: str = Field(
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow",
        alias="NEXTBEST_MLFLOW_BACKEND_STORE_URI",
        description="SQLAlchemy URI of the MLflow server's backend store (postgresql+psycopg2://...).",
        repr=False,
    )
    mlflow_artifacts_destination: str | None = Field(
        default=None,
        alias="NEXTBEST_MLFLOW_ARTIFACTS_DESTINATION",
        description="Where the MLflow server keeps artifacts (folder or s3://, gs://, ...). "
        "Default: $NEXTBEST_HOME/mlflow-artifacts.",
    )
    mlflow_host: str = Field(
        default="127.0.0.1",
        alias="NEXTBEST_MLFLOW_HOST",
        description="Interface the MLflow tracking server listens on.",
    )
    mlflow_port: int = Field(
        default=5000,
        alias="NEXTBEST_MLFLOW_PORT",
        ge=1,
        le=65535,
        description="Port of the MLflow server.",
    )
    mlflow_workers: int = Field(
        default=2,
        alias="NEXTBEST_MLFLOW_WORKERS",
        ge=1,
        description="Worker processes of the MLflow server (uvicorn).",
    )
    dbt_target: Literal["duckdb", "postgres"] = Field(
        default="duckdb",
        alias="NEXTBEST_DBT_TARGET",
        description="dbt output in profiles.yml: duckdb (the warehouse file) or postgres.",
    )
    pg_host: str = Field(
        default="127.0.0.1",
        alias="NEXTBEST_PG_HOST",
        description="PostgreSQL host of the warehouse for the dbt postgres target.",
    )
    pg_port: int = Field(
        default=5432,
        alias="NEXTBEST_PG_PORT",
        ge=1,
        le=65535,
        description="PostgreSQL port of the warehouse.",
    )
    pg_user: str = Field(
        default="postgres", alias="NEXTBEST_PG_USER", description="PostgreSQL warehouse user."
    )
    pg_password: SecretStr = Field(
        default=SecretStr(""),
        alias="NEXTBEST_PG_PASSWORD",
        description="PostgreSQL warehouse password.",
    )
    pg_db: str = Field(
        default="nextbest", alias="NEXTBEST_PG_DB", description="PostgreSQL warehouse database."
    )

    @cached_property
    def artifacts_destination(self) -> str:
        """Artifact root of the MLflow server: the setting, else a folder under the home."""
        if self.mlflow_artifacts_destination:
            return self.mlflow_artifacts_destination
        return str((get_settings().home / "mlflow-artifacts").resolve())

    @property
    def mlflow_server_uri(self) -> str:
        """The URI clients put in `MLFLOW_TRACKING_URI` to reach the tracking server."""
        return f"http://{self.mlflow_host}:{self.mlflow_port}"

    def warehouse_dsn(self) -> dict[str, object]:
        """psycopg2 connection arguments of the PostgreSQL warehouse."""
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "user": self.pg_user,
            "password": self.pg_password.get_secret_value(),
            "dbname": self.pg_db,
        }

    def dagster_dsn(self) -> dict[str, object]:
        """psycopg2 connection arguments of Dagster's storage database."""
        return {
            "host": self.dagster_pg_host,
            "port": self.dagster_pg_port,
            "user": self.dagster_pg_user,
            "password": self.dagster_pg_password.get_secret_value(),
            "dbname": self.dagster_pg_db,
        }


def get_deploy_settings() -> DeploySettings:
    """Read the deployment settings from the environment now."""
    return DeploySettings()
