"""Settings of the model stage.

The class lives in `ml.settings`, beside the code that reads it, so that `ml/` never imports
Dagster; this module is its name in the settings registry.
"""

from __future__ import annotations

from ml.settings import MLSettings

__all__ = ["MLSettings", "get_ml_settings"]


def get_ml_settings() -> MLSettings:
    """Read the model settings from the environment now."""
    return MLSettings()
