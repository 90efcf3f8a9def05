"""Plain-Python models for nextbest: training, evaluation and recommendations (no Dagster)."""
