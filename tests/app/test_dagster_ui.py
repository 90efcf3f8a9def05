"""The Dagster UI shows the whole pipeline: checked through the webserver's GraphQL API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        jobs { name }
        sensors { name }
        schedules { name defaultStatus }
        assetNodes {
          assetKey { path }
          groupName
          description
          owners { ... on UserAssetOwner { email } ... on TeamAssetOwner { team } }
          assetChecksOrError { ... on AssetChecks { checks { name } } }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("ui-home")
    port = _free_port()
    env = os.environ | {
        "NEXTBEST_HOME": str(home),
        "DAGSTER_HOME": str(home),
        "NEXTBEST_WAREHOUSE": str(home / "warehouse.duckdb"),
    }
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {proc.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not answer within 180 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _repository(url: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        body = httpx.post(url, json={"query": QUERY}, timeout=60).json()
        result = body["data"]["repositoriesOrError"]
        assert "message" not in result, result.get("message")
        nodes = result["nodes"]
        # The code location may still be loading right after the server starts.
        if nodes or time.monotonic() > deadline:
            assert len(nodes) == 1, nodes
            return nodes[0]
        time.sleep(2)


def test_the_ui_shows_every_group_with_described_owned_assets(webserver: str) -> None:
    repo = _repository(webserver)
    groups = {node["groupName"] for node in repo["assetNodes"]}
    assert {"ingest", "transform", "ml", "activation"} <= groups
    ours = [n for n in repo["assetNodes"] if n["groupName"] in ("ingest", "ml", "activation")]
    assert all(n["description"] for n in ours), [
        n["assetKey"] for n in ours if not n["description"]
    ]
    assert all(n["owners"] for n in ours), [n["assetKey"] for n in ours if not n["owners"]]
    keys = {"/".join(n["assetKey"]["path"]) for n in repo["assetNodes"]}
    assert {
        "raw/intercom_contacts",
        "raw/intercom_events",
        "raw/stripe_invoices",
        "fct_user_features",
        "fct_conversion_labels",
        "conversion_model",
        "next_best_actions",
        "intercom_next_best_actions",
    } <= keys


def test_the_ui_shows_dbt_tests_and_other_checks_as_asset_checks(webserver: str) -> None:
    repo = _repository(webserver)
    checks = {
        "/".join(n["assetKey"]["path"]): {c["name"] for c in n["assetChecksOrError"]["checks"]}
        for n in repo["assetNodes"]
    }
    # dbt's unique/not_null tests on a mart's key arrive as checks of that mart's asset.
    assert any(name.startswith(("unique_", "not_null_")) for name in checks["dim_users"])
    assert checks["conversion_model"], "the model has its ROC-AUC floor check"
    assert checks["intercom_next_best_actions"], "the write-back has its failure-rate check"


def test_the_ui_shows_the_sensor_schedules_and_jobs(webserver: str) -> None:
    repo = _repository(webserver)
    assert repo["sensors"], "the completed-action sensor is defined"
    schedules = repo["schedules"]
    assert len(schedules) >= 2
    # Both schedules are off until someone switches them on in the UI.
    assert {s["defaultStatus"] for s in schedules} == {"STOPPED"}
    jobs = {job["name"] for job in repo["jobs"]}
    assert {"full_refresh", "incremental_sync", "retrain"} <= jobs
