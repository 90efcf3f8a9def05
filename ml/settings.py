"""Settings of the model stage, read from environment variables when asked for.

They live here, beside the code that uses them, so `ml/` stays free of Dagster;
`orchestration.models.settings` re-exports the class for the settings registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent / "config"


class MLSettings(BaseSettings):
    """Training, promotion and recommendation settings; each field reads its alias."""

    # An empty variable (`NEXTBEST_CATALOGUE_FILE=`, as in .env.example) means unset: read as
    # a path it would be the working directory, as an event name one that never occurs.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    goals_file: Path = Field(
        default=CONFIG_DIR / "goals.yaml",
        alias="NEXTBEST_GOALS_FILE",
        description="YAML file declaring the conversion goals (window, segment, primary).",
    )
    catalogue_file: Path | None = Field(
        default=None,
        alias="NEXTBEST_CATALOGUE_FILE",
        description="YAML file overriding the action catalogue. Unset: derived from the data.",
    )
    conversion_event: str | None = Field(
        default=None,
        alias="NEXTBEST_CONVERSION_EVENT",
        description="Event that marks paying, never an action. Unset: detected at payment time.",
    )
    # numpy's RandomState (scikit-learn, XGBoost) takes seeds from 0 to 2**32 - 1 only.
    seed: int = Field(
        default=42, alias="NEXTBEST_ML_SEED", ge=0, le=2**32 - 1, description="Seed of every model."
    )
    promotion_margin: float = Field(
        default=0.002,
        alias="NEXTBEST_PROMOTION_MARGIN",
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Test ROC-AUC a challenger must gain over the champion to replace it.",
    )
    auc_floor: float = Field(
        default=0.6,
        alias="NEXTBEST_AUC_FLOOR",
        ge=0,
        le=1,
        description="Lowest test ROC-AUC the model asset check accepts.",
    )
    calibration: Literal["isotonic", "platt"] = Field(
        default="isotonic",
        alias="NEXTBEST_CALIBRATION",
        description="How probabilities are calibrated on the validation split.",
    )
    valid_fraction: float = Field(
        default=0.2,
        alias="NEXTBEST_VALID_FRACTION",
        gt=0,
        lt=0.5,
        description="Share of users (by sign-up time) in the validation split.",
    )
    test_fraction: float = Field(
        default=0.2,
        alias="NEXTBEST_TEST_FRACTION",
        gt=0,
        lt=0.5,
        description="Share of the latest sign-ups in the test split.",
    )
    max_rounds: int = Field(
        default=600,
        alias="NEXTBEST_XGB_MAX_ROUNDS",
        ge=1,
        description="Most boosting rounds; early stopping on validation usually ends sooner.",
    )
    catalogue_min_share: float = Field(
        default=0.05,
        alias="NEXTBEST_CATALOGUE_MIN_SHARE",
        gt=0,
        le=1,
        description="Share of converters doing an event before paying for it to be an action.",
    )
    min_support: float = Field(
        default=0.02,
        alias="NEXTBEST_MIN_SUPPORT",
        ge=0,
        le=1,
        description="Share of similar converters who did an action next for it to be a candidate.",
    )
    support_focus: float = Field(
        default=1.25,
        alias="NEXTBEST_SUPPORT_FOCUS",
        ge=0,
        allow_inf_nan=False,
        description="Raises the support bar where similar converters agree on the next step: a "
        "candidate needs focus x best share squared (at most the best share). 0: off.",
    )
    min_similar: int = Field(
        default=30,
        alias="NEXTBEST_MIN_SIMILAR_USERS",
        ge=1,
        description="Fewest similar converters a support estimate may rest on.",
    )

    @field_validator("goals_file", "catalogue_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        # Only a path that was set is checked (pydantic leaves defaults alone): the shipped
        # goal file may be absent, but a set path that is missing would otherwise be skipped
        # in silence, training the default goal or the derived catalogue instead.
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file" if value.exists() else f"no file {value}")
        return value
