"""What a live run rebuilds: the dbt lineage of the scored marts, without tests, parsed once."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.activation.scope import CONTACT_IDS_TAG, scope_tags
from orchestration.settings import get_settings
from orchestration.transform import (
    PARTIAL_PARSE,
    SCOPED_RUN_TAG,
    dbt_project,
    keep_partial_parse,
    partial_parse_cache,
    skip_unit_tests,
)
from orchestration.transform.settings import TransformSettings

MARTS = ("fct_user_features", "fct_conversion_labels", "fct_user_journeys", "dim_users")


def lineage_from_manifest(manifest: dict, names: tuple[str, ...]) -> set[str]:
    """Models and seeds the named models are built from (and themselves), by dbt's parent map."""
    nodes = manifest["nodes"]
    by_name = {
        node["name"]: uid
        for uid, node in nodes.items()
        if node["resource_type"] in ("model", "seed")
    }
    todo, seen = [by_name[name] for name in names], set()
    while todo:
        uid = todo.pop()
        if uid in seen or uid not in nodes:
            continue  # sources are ingestion assets, not dbt's to build
        seen.add(uid)
        todo.extend(manifest["parent_map"].get(uid, []))
    return {nodes[uid]["name"] for uid in seen}


@pytest.fixture(scope="module")
def jobs() -> dict[str, dg.JobDefinition]:
    from orchestration.definitions import defs

    definitions = defs()
    return {name: definitions.resolve_job_def(name) for name in ("live_update", "incremental_sync")}


@pytest.fixture(scope="module")
def live_job(jobs) -> dg.JobDefinition:
    return jobs["live_update"]


def test_a_live_run_rebuilds_exactly_the_models_the_scored_marts_are_built_from(live_job):
    manifest = json.loads(Path(dbt_project().manifest_path).read_text())
    expected = lineage_from_manifest(manifest, MARTS)
    all_models = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
    }
    selected = {key.to_user_string() for key in live_job.asset_layer.selected_asset_keys}
    assert selected & all_models == expected
    # fct_sessions feeds no score, so the live run leaves it to the hourly sync.
    assert "fct_sessions" in all_models - expected
    assert {"next_best_actions", "user_scores", "intercom_next_best_actions"} <= selected
    assert not {"training_set", "conversion_model"} & selected
    assert {"raw/intercom_events", "raw/intercom_contacts"} <= selected


def test_a_live_run_runs_no_dbt_test_but_keeps_the_checks_on_recommendations(jobs):
    manifest = json.loads(Path(dbt_project().manifest_path).read_text())
    tested = {
        manifest["nodes"][uid]["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        for uid in node["depends_on"]["nodes"]
        if uid in manifest["nodes"]
    }

    def checks(job: dg.JobDefinition) -> tuple[set[str], set[str]]:
        keys = job.asset_layer.asset_graph.asset_check_keys
        on_models = {k.asset_key.to_user_string() for k in keys} & tested
        return on_models, {k.name for k in keys}

    # The hourly sync tests the models; the live run does not, and keeps the other checks.
    assert checks(jobs["incremental_sync"])[0] == tested
    on_models, names = checks(jobs["live_update"])
    assert on_models == set()
    assert {
        "no_completed_action_recommended",
        "every_open_user_has_action_or_reason",
        "failed_attempts_within_limit",
    } <= names


def test_only_runs_scoped_to_contacts_skip_the_unit_tests():
    args = ["build", "--threads", "2"]
    assert SCOPED_RUN_TAG == CONTACT_IDS_TAG
    assert skip_unit_tests(args, scope_tags(["c1"])) == [
        "build",
        "--threads",
        "2",
        "--exclude-resource-type",
        "unit_test",
    ]
    assert skip_unit_tests(args, {"nextbest/trigger": "converted"}) == args


def test_the_parse_is_kept_per_warehouse_and_vars(nextbest_home: Path, monkeypatch, tmp_path):
    settings = get_settings()
    first = partial_parse_cache(settings, TransformSettings())
    assert first.parent == settings.home / "dbt"
    assert partial_parse_cache(settings, TransformSettings()) == first
    monkeypatch.setenv("NEXTBEST_SNAPSHOT_AFTER_EVERY_EVENT", "true")
    assert partial_parse_cache(settings, TransformSettings()) != first
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(tmp_path / "other.duckdb"))
    monkeypatch.delenv("NEXTBEST_SNAPSHOT_AFTER_EVERY_EVENT")
    assert partial_parse_cache(get_settings(), TransformSettings()) != first

    target = tmp_path / "target"
    keep_partial_parse(target, first)  # a run that failed before parsing leaves nothing
    assert not first.exists()
    target.mkdir()
    (target / PARTIAL_PARSE).write_bytes(b"parse one")
    keep_partial_parse(target, first)
    (target / PARTIAL_PARSE).write_bytes(b"parse two")
    keep_partial_parse(target, first)
    assert first.read_bytes() == b"parse two"
    assert [p.name for p in first.parent.iterdir()] == [first.name]
