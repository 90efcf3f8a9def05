"""Fixtures shared by every test: an isolated home folder per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nextbest_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NEXTBEST_HOME with every derived variable cleared, so defaults apply."""
    home = tmp_path / "home"
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    for variable in (
        "NEXTBEST_WAREHOUSE",
        "DAGSTER_HOME",
        "MLFLOW_TRACKING_URI",
        "INTERCOM_ACCESS_TOKEN",
        "STRIPE_API_KEY",
        "INTERCOM_BASE_URL",
        "STRIPE_BASE_URL",
    ):
        monkeypatch.delenv(variable, raising=False)
    return home
