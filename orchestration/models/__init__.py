"""Models: training, scoring and recommendations as Dagster assets (asset group `ml`)."""

import dagster as dg


def defs() -> dg.Definitions:
    """Definitions of the model stage."""
    from orchestration.models.assets import (
        conversion_model,
        next_best_actions,
        training_set,
        user_scores,
    )

    return dg.Definitions(assets=[training_set, conversion_model, user_scores, next_best_actions])
