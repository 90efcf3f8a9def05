"""Measure what a deployment needs: each stage's wall time and peak memory at a given size.

`python -m deploy sizing --users 10000` runs, each in its own process so that its peak memory
is its own: the synthetic journeys loaded into the raw layer (the sandbox's export, standing
in for the ingestion's API reads), `dbt build` on DuckDB, and the model stage's training of the
primary goal with MLflow logging. The numbers feed the sizing table in `docs/deploy.md`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STAGES = ("raw", "dbt", "train")


@dataclass(frozen=True)
class StageFigure:
    """One stage measured: wall seconds and the peak resident memory of its process tree."""

    stage: str
    seconds: float
    peak_mib: float


@dataclass(frozen=True)
class SizingResult:
    """All stages at one size, with the data volumes they produced."""

    users: int
    events: int
    snapshots: int
    warehouse_mib: float
    stages: list[StageFigure]


def _measure(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run a command; return its wall seconds and its peak RSS (largest process) in MiB."""
    started = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4 reports the child's own peak; children it waited for count in it too.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({process.returncode}); see {log}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def run_stage(stage: str, users: int, folder: Path) -> None:
    """One stage, in this process (called by the sizing parent through `python -m deploy`)."""
    import duckdb

    warehouse = folder / "warehouse.duckdb"
    if stage == "raw":
        from sandbox.export import write_raw
        from sandbox.runner import build_dataset_store

        store = build_dataset_store(
            "synthetic", users=users, seed=0, cache_dir=folder / "cache", dirt=False
        )
        with duckdb.connect(str(warehouse)) as con:
            write_raw(store, con)
    elif stage == "train":
        from ml.goals import load_goals, primary_goal
        from ml.pipeline import read_marts, train_and_register
        from ml.settings import MLSettings

        settings = MLSettings()
        with duckdb.connect(str(warehouse), read_only=True) as con:
            marts = read_marts(con)
        goal = primary_goal(load_goals(settings.goals_file))
        run = train_and_register(
            marts,
            goal,
            settings,
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            artifact_root=folder / "artifacts",
        )
        (folder / "train.json").write_text(json.dumps(run.seconds))
    else:
        raise ValueError(f"unknown stage {stage!r}; known: raw, train")


def measure(users: int, folder: Path) -> SizingResult:
    """Run every stage at this size in `folder` and measure it."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    warehouse = folder / "warehouse.duckdb"
    warehouse.unlink(missing_ok=True)
    log = folder / "sizing.log"
    env = {**os.environ, "NEXTBEST_WAREHOUSE": str(warehouse), "NEXTBEST_HOME": str(folder)}
    root = Path(__file__).resolve().parents[1]
    python = sys.executable
    dbt = str(Path(python).with_name("dbt"))
    figures = []
    for stage in STAGES:
        if stage == "dbt":
            command = [dbt, "build", "--project-dir", str(root), "--profiles-dir", str(root)]
            stage_env = {**env, "DBT_TARGET_PATH": str(folder / "target")}
            stage_env["DBT_LOG_PATH"] = str(folder / "dbt_logs")
        else:
            command = [python, "-m", "deploy", "sizing-stage", stage, str(users), str(folder)]
            stage_env = env
        seconds, peak = _measure(command, stage_env, log)
        figures.append(StageFigure(stage, round(seconds, 1), round(peak, 1)))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        events = con.execute("select count(*) from raw.intercom_events").fetchone()[0]
        snapshots = con.execute("select count(*) from marts.fct_user_features").fetchone()[0]
        users_seen = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    result = SizingResult(
        users=users_seen,
        events=events,
        snapshots=snapshots,
        warehouse_mib=round(warehouse.stat().st_size / 2**20, 1),
        stages=figures,
    )
    (folder / "sizing.json").write_text(json.dumps(asdict(result), indent=2))
    return result
