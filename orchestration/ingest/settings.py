"""Settings of the ingestion stage (environment variables `NEXTBEST_INGEST_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """How the ingestion assets read Intercom and Stripe."""

    # An empty variable (a copied .env.example line) means unset, as in every settings class.
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    full_refresh: bool = Field(
        default=False,
        alias="NEXTBEST_INGEST_FULL_REFRESH",
        description="Ignore the incremental cursors and re-read every stream in full.",
    )
    lookback_seconds: int = Field(
        default=86_400,
        alias="NEXTBEST_INGEST_LOOKBACK_SECONDS",
        ge=0,
        description="Incremental reads start this far before the last cursor (search lag).",
    )
    contacts_per_page: int = Field(
        default=150,
        alias="NEXTBEST_INGEST_CONTACTS_PER_PAGE",
        ge=1,
        le=150,
        description="Contacts a page when listing and searching (Intercom's maximum is 150).",
    )
    # 32 requests under way keep Intercom's 166.7 a second busy up to answers of 0.19 s
    # (32 / 166.7); on loopback the rate budget, not the concurrency, sets the pace.
    event_concurrency: int = Field(
        default=32,
        alias="NEXTBEST_INGEST_EVENT_CONCURRENCY",
        ge=1,
        le=256,
        description="Contacts whose events are read at the same time.",
    )
    event_retention_days: int = Field(
        default=90,
        alias="NEXTBEST_INGEST_EVENT_RETENTION_DAYS",
        ge=1,
        description="Days of events Intercom lists per contact; older ones need import-events.",
    )
    progress_every: int = Field(
        default=1_000,
        alias="NEXTBEST_INGEST_PROGRESS_EVERY",
        ge=1,
        description="Log progress every this many contacts while reading events.",
    )
    max_attempts: int = Field(
        default=6,
        alias="NEXTBEST_INGEST_MAX_ATTEMPTS",
        ge=1,
        description="Attempts per API request (first included) on 429, 5xx or no answer.",
    )
    scroll_restarts: int = Field(
        default=3,
        alias="NEXTBEST_INGEST_SCROLL_RESTARTS",
        ge=0,
        description="Times the companies scroll may start over after expiry or a 5xx.",
    )
    scroll_busy_wait_seconds: float = Field(
        default=65.0,
        alias="NEXTBEST_INGEST_SCROLL_BUSY_WAIT_SECONDS",
        ge=0,
        allow_inf_nan=False,
        description="Wait before retrying when another companies scroll is still open.",
    )
    stripe_overlap_seconds: int = Field(
        default=3_600,
        alias="NEXTBEST_INGEST_STRIPE_OVERLAP_SECONDS",
        ge=0,
        description="Stripe incremental reads start this far before the last cursor.",
    )
    stripe_events_retention_days: int = Field(
        default=30,
        alias="NEXTBEST_INGEST_STRIPE_EVENTS_RETENTION_DAYS",
        ge=1,
        description="Days Stripe keeps /v1/events; an older cursor forces a full re-list.",
    )
