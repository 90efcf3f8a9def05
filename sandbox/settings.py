"""Settings of the sandbox (the dataset and port are core settings in orchestration.settings)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    """How the local Intercom and Stripe stand-in behaves; each field reads its alias."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class.
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    faults: str | None = Field(
        default=None,
        alias="NEXTBEST_SANDBOX_FAULTS",
        description="Sandbox fault profile (docs/sandbox.md); unset: none.",
    )
    dirt: bool = Field(
        default=True,
        alias="NEXTBEST_SANDBOX_DIRT",
        description="Add the documented dirt (leads, shared emails, refunds...) to the sandbox.",
    )
    event_window_days: int = Field(
        default=90,
        ge=0,
        alias="NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS",
        description="Days of events the sandbox's Intercom serves before its clock; 0: all.",
    )
    rate_limit_per_minute: int | None = Field(
        default=10_000,
        ge=1,
        alias="NEXTBEST_SANDBOX_RATE_LIMIT",
        description="Intercom calls a minute the sandbox allows (10-second windows).",
    )
    users: int = Field(
        default=10_000,
        ge=1,
        alias="NEXTBEST_SANDBOX_USERS",
        description="Users of the synthetic dataset.",
    )
    seed: int = Field(
        default=0,
        alias="NEXTBEST_SANDBOX_SEED",
        ge=0,
        description="Seed of the synthetic dataset.",
    )

    @field_validator("faults")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        from sandbox.faults import PROFILES

        if value and value not in PROFILES:
            raise ValueError(
                f"unknown fault profile {value!r}; known: {', '.join(sorted(PROFILES))}"
            )
        return value or None
