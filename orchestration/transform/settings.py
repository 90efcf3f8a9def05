"""Settings of the transformation stage (the dbt project)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TransformSettings(BaseSettings):
    """How the dbt project is run; the window and the session gap are core settings."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class.
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    as_of: int | None = Field(
        default=None,
        alias="NEXTBEST_AS_OF",
        ge=0,
        # Above 10**11 is most likely milliseconds (year 5138 on as seconds), as for the
        # times in the raw layer; it would also overflow dbt's day arithmetic.
        lt=10**11,
        description="The data's end for labels, as Unix seconds. Default: the latest event "
        "or payment in the warehouse.",
    )
    snapshot_after_every_event: bool = Field(
        default=False,
        alias="NEXTBEST_SNAPSHOT_AFTER_EVERY_EVENT",
        description="Also take a feature snapshot after every event, not only after each "
        "session and at day boundaries.",
    )
    dbt_threads: int = Field(
        default=2,
        alias="NEXTBEST_DBT_THREADS",
        ge=1,
        description="Models dbt builds at the same time.",
    )
