"""Transformation: the dbt project as Dagster assets (asset group `transform`).

Nothing here runs dbt at import. `defs()` builds the definitions; it makes sure the dbt
manifest exists first (`dbt parse`, a few seconds, only when it is missing or under
`dagster dev`), so a fresh clone loads without a pre-built manifest.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

# Dagster checks the context's annotation by identity, so this module keeps real annotations
# (no `from __future__ import annotations`).
from dagster import AssetExecutionContext

from orchestration.settings import PROJECT_ROOT, Settings, get_settings
from orchestration.transform.settings import TransformSettings

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

GROUP = "transform"
RAW_PREFIX = "raw"
PARTIAL_PARSE = "partial_parse.msgpack"

# Run tag of the live loop's runs (`orchestration.activation.scope.CONTACT_IDS_TAG`): such a run
# follows a few users, so it skips dbt's unit tests, which test the SQL and not the data.
SCOPED_RUN_TAG = "nextbest/contact_ids"


def dbt_vars(settings: Settings, transform: TransformSettings) -> dict[str, Any]:
    """The dbt vars the project takes from the settings."""
    values: dict[str, Any] = {
        "conversion_window_days": settings.conversion_window_days,
        "session_gap_minutes": settings.session_gap_minutes,
        "snapshot_after_every_event": transform.snapshot_after_every_event,
    }
    if transform.as_of is not None:
        values["as_of"] = transform.as_of
    return values


def dbt_build_args(
    settings: Settings, transform: TransformSettings, *, select: str | None = None
) -> list[str]:
    """Arguments of `dbt build` with the project's vars and thread count."""
    args = [
        "build",
        "--vars",
        json.dumps(dbt_vars(settings, transform), sort_keys=True),
        "--threads",
        str(transform.dbt_threads),
    ]
    if select:
        args += ["--select", select]
    return args


def skip_unit_tests(args: list[str], tags: Mapping[str, str]) -> list[str]:
    """The arguments with unit tests excluded when the run is a live run (scoped to contacts)."""
    if SCOPED_RUN_TAG in tags:
        return [*args, "--exclude-resource-type", "unit_test"]
    return args


def partial_parse_cache(settings: Settings, transform: TransformSettings) -> Path:
    """Where the parse of the last `dbt` run with these vars and this warehouse is kept.

    Every invocation gets its own target folder, and dbt discards a parse made with other vars
    or another profile (the warehouse path is in it), so the project's own
    `target/partial_parse.msgpack` from `dbt parse` never serves a run. Keeping the run's parse
    per vars and warehouse lets the next run parse only the files that changed; dbt still
    checks every file's hash, so a stale parse is re-done, never used.
    """
    values = json.dumps(dbt_vars(settings, transform), sort_keys=True)
    key = hashlib.sha1(f"{settings.warehouse}|{values}".encode()).hexdigest()[:12]
    return settings.home / "dbt" / f"{key}.{PARTIAL_PARSE}"


def keep_partial_parse(target: Path, cache: Path) -> None:
    """Keep a run's parse for the next run; readers never see a half-written file."""
    produced = target / PARTIAL_PARSE
    if not produced.exists():
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}")
    shutil.copyfile(produced, partial)
    os.replace(partial, cache)


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment variables dbt's profile reads: the warehouse the run writes."""
    return {"NEXTBEST_WAREHOUSE": str(settings.warehouse)}


def dbt_executable() -> str:
    """The dbt beside this interpreter, so runs work without the virtualenv on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def _translator_class() -> type:
    from dagster_dbt import DagsterDbtTranslator

    class NextbestTranslator(DagsterDbtTranslator):
        """Sources are the ingestion assets `raw/<table>`; models are keyed by their name.

        A source whose table is written by another table's asset says so in its dbt meta
        (`dagster.asset_key`), which the base class honours.
        """

        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            meta = dbt_resource_props.get("meta", {}).get("dagster", {})
            if meta.get("asset_key"):
                return dg.AssetKey(meta["asset_key"])
            if dbt_resource_props["resource_type"] == "source":
                return dg.AssetKey([RAW_PREFIX, dbt_resource_props["name"]])
            return dg.AssetKey([dbt_resource_props["name"]])

        def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
            return GROUP

        def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
            return ["team:analytics-engineering"]

    return NextbestTranslator


@cache
def dbt_project() -> "DbtProject":
    """The project at the checkout's root, its manifest prepared when missing."""
    from dagster_dbt import DbtProject

    project = DbtProject(project_dir=PROJECT_ROOT, profiles_dir=PROJECT_ROOT)
    if os.environ.get("DAGSTER_IS_DEV_CLI") or not Path(project.manifest_path).exists():
        # `dbt parse` needs no warehouse; it only writes target/manifest.json.
        subprocess.run(
            [dbt_executable(), "parse", "--quiet"],
            cwd=PROJECT_ROOT,
            env=os.environ | {"DBT_PROFILES_DIR": str(PROJECT_ROOT)},
            check=True,
        )
    return project


@cache
def dbt_resource(project: "DbtProject") -> Any:
    """One dbt CLI resource per process, so later runs in the process reuse its dbt version.

    The resource asks `dbt --version` once per instance: a whole dbt start-up, seconds on a busy
    machine.
    """
    from dagster_dbt import DbtCliResource

    return DbtCliResource(project_dir=project, dbt_executable=dbt_executable())


def build_assets(project: "DbtProject") -> dg.AssetsDefinition:
    """One multi-asset over every dbt model, seed and test (tests become asset checks)."""
    from dagster_dbt import DagsterDbtTranslatorSettings, dbt_assets

    translator = _translator_class()(
        settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
    )

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        name="nextbest_dbt",
    )
    def nextbest_dbt(context: AssetExecutionContext) -> Iterator[Any]:
        settings, transform = get_settings(), TransformSettings()
        # dbt's profile reads the warehouse path from the environment of its process.
        os.environ.update(dbt_env(settings))
        dbt = dbt_resource(project)
        args = skip_unit_tests(dbt_build_args(settings, transform), context.run.tags)
        context.log.info(f"dbt {' '.join(args)} on {settings.warehouse}")
        target = Path(project.project_dir) / "target" / f"nextbest_dbt-{uuid.uuid4().hex[:12]}"
        cache = partial_parse_cache(settings, transform)
        if cache.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache, target / PARTIAL_PARSE)
        yield from dbt.cli(args, context=context, target_path=target).stream()
        keep_partial_parse(target, cache)

    return nextbest_dbt


def defs() -> dg.Definitions:
    """Definitions of the transformation stage."""
    return dg.Definitions(assets=[build_assets(dbt_project())])
