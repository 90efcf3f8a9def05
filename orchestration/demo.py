"""The main job end to end on the embedded default, as `make demo` runs it."""

from __future__ import annotations

import time

from rich.console import Console


def run_demo(console: Console) -> int:
    """Materialize every asset through the Dagster instance in the home folder.

    Returns:
        The process exit code: 0 when every stage succeeded.
    """
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.settings import get_settings

    settings = get_settings()
    settings.prepare_home()
    console.print(f"[bold]nextbest demo[/bold]: home {settings.home.resolve()}")
    definitions = defs()
    keys = definitions.resolve_all_asset_keys()
    console.print(f"definitions loaded: {len(keys)} assets")
    if not keys:
        console.print("no assets are defined yet: nothing to materialize")
        return 0
    started = time.monotonic()
    job = definitions.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    seconds = time.monotonic() - started
    status = "succeeded" if result.success else "failed"
    console.print(f"run {result.run_id} {status} in {seconds:.1f} s ({len(keys)} assets)")
    return 0 if result.success else 1
