"""Settings of the write-back and the live loop, read from the environment when asked for."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ActivationSettings(BaseSettings):
    """How next best actions reach Intercom, and how fast the live loop reacts."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    dry_run: bool = Field(
        default=False,
        alias="NEXTBEST_ACTIVATION_DRY_RUN",
        description="Write the planned attribute changes to the audit table and send nothing.",
    )
    concurrency: int = Field(
        default=8,
        alias="NEXTBEST_ACTIVATION_CONCURRENCY",
        ge=1,
        le=64,
        description="Contact updates in flight at once during the write-back.",
    )
    goal: str = Field(
        default="",
        alias="NEXTBEST_ACTIVATION_GOAL",
        description="Goal whose recommendations feed Intercom. Empty: the primary goal.",
    )
    max_failed_share: float = Field(
        default=0.01,
        alias="NEXTBEST_ACTIVATION_MAX_FAILED_SHARE",
        ge=0,
        le=1,
        description="Share of failed write attempts above which the write-back check fails.",
    )
    sensor_interval_seconds: int = Field(
        default=60,
        alias="NEXTBEST_SENSOR_INTERVAL_SECONDS",
        ge=1,
        description="Seconds between two ticks of the sensor that notices completed actions.",
    )
    sensor_lookback_seconds: int = Field(
        default=300,
        alias="NEXTBEST_SENSOR_LOOKBACK_SECONDS",
        ge=0,
        description="How far before its cursor the sensor searches again, for Intercom's lag.",
    )
    conversion_events: str = Field(
        default="payment_done",
        alias="NEXTBEST_CONVERSION_EVENTS",
        description="Comma-separated event names that mean a user converted (live loop).",
    )
    raw_max_age_hours: float = Field(
        default=26,
        alias="NEXTBEST_RAW_MAX_AGE_HOURS",
        gt=0,
        description="Hours after which a raw table counts as stale in its freshness check.",
    )

    @property
    def conversion_event_names(self) -> frozenset[str]:
        """The conversion event names as a set."""
        return frozenset(n.strip() for n in self.conversion_events.split(",") if n.strip())


def get_activation_settings() -> ActivationSettings:
    """Read the activation settings from the environment now."""
    return ActivationSettings()
