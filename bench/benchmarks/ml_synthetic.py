"""The models on the synthetic 100,000 users, beside the logistic-regression baseline.

Time and memory of training, scoring and recommending, and the planted-truth targets.

The warehouse is built once per run (sandbox store -> raw layer -> dbt); only the model stage
is timed. Set NEXTBEST_BENCH_ML_USERS to measure at another size, and
NEXTBEST_BENCH_ML_WAREHOUSE to read one already built by `build_warehouse` (the synthetic
dataset, seed 1, dirt off, that many users) instead.
"""

import os
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import psutil

from bench.benchmarks._ml_warehouse import build_warehouse
from bench.harness import Figure, benchmark


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> "PeakMemory":
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@benchmark(
    "ml_synthetic", "train, score and recommend on synthetic users against logistic regression"
)
def ml_synthetic() -> list[Figure]:
    from ml.features import spec_for
    from ml.goals import default_goals
    from ml.pipeline import (
        catalogue_for,
        latest_states,
        production_support,
        read_marts,
    )
    from ml.recommend import rank_candidates, recommend
    from ml.settings import MLSettings
    from ml.train import label_snapshots, train_goal
    from ml.truth import agreement_by_time, auc_gap, planted_agreement
    from sandbox.synthetic import SyntheticTruth

    users = int(os.environ.get("NEXTBEST_BENCH_ML_USERS", "100000"))
    settings = MLSettings()
    goal = default_goals()[0]
    truth = SyntheticTruth()
    built = os.environ.get("NEXTBEST_BENCH_ML_WAREHOUSE")
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = Path(built) if built else Path(scratch) / "warehouse.duckdb"
        if not built:
            build_warehouse(
                warehouse, "synthetic", users=users, seed=1, dirt=False, cache_dir=Path(scratch)
            )
        with duckdb.connect(str(warehouse), read_only=True) as con:
            marts = read_marts(con)
    catalogue = catalogue_for(marts, settings)
    frame = label_snapshots(
        marts.features, marts.labels, goal, marts.data_end, catalogue.conversion_event
    )
    spec = spec_for(marts.features, catalogue.events, [catalogue.conversion_event])
    with PeakMemory() as train_memory:
        result = train_goal(frame, spec, goal, seed=settings.seed, max_rounds=settings.max_rounds)
    train_rows = len(result.splits["train"])

    states = latest_states(marts)
    started = time.perf_counter()
    scores = result.model.predict(states)
    score_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result.logreg.predict_proba(spec.encode(states))
    logreg_score_seconds = time.perf_counter() - started

    labels = marts.labels.set_index("user_id")
    open_mask = states["user_id"].map(labels["first_payment_at"]).isna() & (
        states["user_id"].map(labels["signed_up_at"]) + np.timedelta64(7, "D") > marts.data_end
    )
    open_states = states.loc[open_mask.to_numpy()].reset_index(drop=True)
    with PeakMemory() as recommend_memory:
        started = time.perf_counter()
        support = production_support(marts, catalogue, settings)
        recs = recommend(
            open_states,
            result.model,
            catalogue,
            support,
            settings.min_support,
            7,
            settings.support_focus,
        )
        recommend_seconds = time.perf_counter() - started
    gap = auc_gap(result.splits["test"], result.test_scores["model"], truth)
    agreement = planted_agreement(recs, open_states, truth)
    candidates = rank_candidates(
        open_states,
        result.model,
        catalogue,
        support,
        settings.min_support,
        settings.support_focus,
    )
    by_time = agreement_by_time(recs, open_states, truth, candidates).set_index("band")
    bands = "; ".join(
        f"{band} {row.agreement:.1%} of {int(row.users):,}"
        for band, row in by_time.iloc[:-1].iterrows()
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    mb = 1024 * 1024
    return [
        Figure(
            "training seconds (XGBoost + calibration)",
            "s",
            result.seconds["xgboost_fit"],
            "logistic regression fit",
            result.seconds["logreg_fit"],
            note=f"{train_rows:,} training snapshots, {users:,} users, load average {load}",
        ),
        Figure(
            "scoring seconds (latest snapshot per user)",
            "s",
            score_seconds,
            "logistic regression scoring",
            logreg_score_seconds,
            note=f"{len(states):,} users, mean score {float(np.mean(scores)):.3f}",
        ),
        Figure(
            "recommendation seconds",
            "s",
            recommend_seconds,
            "logistic regression fit",
            result.seconds["logreg_fit"],
            note=f"{len(open_states):,} open unconverted users, support table included",
        ),
        Figure("training peak memory", "MiB", train_memory.peak / mb, note="process RSS"),
        Figure("recommendation peak memory", "MiB", recommend_memory.peak / mb, note="process RSS"),
        Figure(
            "test ROC-AUC",
            "AUC",
            gap["synthetic_model_test_roc_auc"],
            "true probabilities",
            gap["synthetic_true_probability_test_roc_auc"],
            better="higher",
            note=f"gap {gap['synthetic_roc_auc_gap']:.4f} (target at most 0.02)",
        ),
        Figure(
            "recommendation equals the planted best action",
            "share",
            agreement["synthetic_planted_best_agreement"],
            better="higher",
            note=(
                f"{len(open_states):,} open unconverted users (target at least 0.90); "
                f"by hours since sign-up: {bands}; planted action supported for "
                f"{by_time.loc['all', 'planted_supported']:.1%}; "
                f"{int(by_time.loc['all', 'near_tie_misses'])} misses within 10% of the "
                "best true gain"
            ),
        ),
    ]
