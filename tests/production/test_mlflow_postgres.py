"""The MLflow tracking server started by `python -m deploy mlflow-server`, on PostgreSQL."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from deploy.postgres import drop_database
from tests.production.conftest import query

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mlflow server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server not healthy after {timeout} s: {log.read_text()[-3000:]}")


def use_the_server(uri: str, log: Path, server: subprocess.Popen, monkeypatch) -> str:
    """Log a run with a model, register it, alias it and load it back by alias."""
    import mlflow

    wait_healthy(uri, server, log)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # An earlier test in the same process may have set a tracking URI in code, which takes
    # precedence over the variable: point MLflow at this server explicitly, and put it back.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        _a_goal_experiment_stores_through_the_server(uri)
        return _log_register_and_load()
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _a_goal_experiment_stores_through_the_server(uri: str) -> None:
    from mlflow import MlflowClient

    from ml.goals import Goal
    from ml.registry import ensure_experiment

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    unused = Path("/nonexistent/artifacts")
    experiment_id = ensure_experiment(client, Goal(name="server-goal"), unused)
    # The server's proxied store (`mlflow-artifacts:`), never a folder on this host.
    location = client.get_experiment(experiment_id).artifact_location
    assert location.startswith("mlflow-artifacts:"), location
    assert ensure_experiment(client, Goal(name="server-goal"), unused) == experiment_id
    assert not unused.exists()


def _log_register_and_load() -> str:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    model = LogisticRegression().fit(features, labels)
    mlflow.set_experiment("nextbest-production-test")
    with mlflow.start_run() as run:
        mlflow.log_param("window_days", 7)
        mlflow.log_metric("auc", 0.75)
        mlflow.sklearn.log_model(model, name="model", registered_model_name="nextbest_test_model")
    MlflowClient().set_registered_model_alias("nextbest_test_model", "champion", "1")
    loaded = mlflow.sklearn.load_model("models:/nextbest_test_model@champion")
    # Far on either side of the boundary between 2 and 3: the classes are certain.
    assert loaded.predict(np.array([[-10.0], [10.0]])).tolist() == [0, 1]
    return run.info.run_id


@pytest.mark.slow
def test_a_run_and_a_registered_model_land_in_postgres_and_the_artifact_folder(
    tmp_path, pg_server, monkeypatch
):
    dsn = {**pg_server, "dbname": f"nextbest_test_{secrets.token_hex(4)}"}
    artifacts = tmp_path / "artifacts"
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(tmp_path / "home"),
        "NEXTBEST_MLFLOW_BACKEND_STORE_URI": (
            f"postgresql+psycopg2://{dsn['user']}@{dsn['host']}:{dsn['port']}/{dsn['dbname']}"
        ),
        "NEXTBEST_MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
        "NEXTBEST_MLFLOW_PORT": str(port),
        "NEXTBEST_MLFLOW_WORKERS": "1",
    }
    log = tmp_path / "mlflow.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "deploy", "mlflow-server"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            run_id = use_the_server(uri, log, server, monkeypatch)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        # Read the backend store directly: run, parameter, metric, model version and alias.
        assert query(dsn, "select status from runs where run_uuid = %s", (run_id,)) == [
            ("FINISHED",)
        ]
        assert query(dsn, "select key, value from params where run_uuid = %s", (run_id,)) == [
            ("window_days", "7")
        ]
        assert query(dsn, "select key, value from metrics where run_uuid = %s", (run_id,)) == [
            ("auc", 0.75)
        ]
        assert query(dsn, "select name, version from model_versions") == [
            ("nextbest_test_model", 1)
        ]
        assert query(dsn, "select name, alias, version from registered_model_aliases") == [
            ("nextbest_test_model", "champion", 1)
        ]
    finally:
        drop_database(dsn)
    # The server wrote the model's files to the artifact folder, not to the client's disk.
    assert len(list(artifacts.rglob("MLmodel"))) == 1
    assert not (tmp_path / "home" / "mlflow").exists()
