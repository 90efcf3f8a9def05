"""The main job end to end on a slice of simple_shop, checked against the slice by pandas.

The slice is every user whose numeric id is divisible by 8 (478 users). Expected figures come
from the raw CSV with pandas, not from anything the pipeline computed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SLICE_MODULUS = 8
WINDOW = pd.Timedelta(days=7)


@pytest.fixture(scope="module")
def shop_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    from orchestration.settings import get_settings
    from sandbox.datasets import simple_shop_csv

    csv = simple_shop_csv(get_settings().cache_dir)
    frame = pd.read_csv(csv)
    sliced = frame[frame["user_id"] % SLICE_MODULUS == 0]
    out = tmp_path_factory.mktemp("slice") / "simple_shop_slice.csv"
    sliced.to_csv(out, index=False)
    return out, sliced


def _expected(sliced: pd.DataFrame) -> dict[str, object]:
    """Sign-up at the first event, conversion at the first `payment_done`, floored to seconds."""
    stamps = pd.to_datetime(sliced["timestamp"], utc=True).dt.floor("s")
    events = sliced.assign(ts=stamps)
    signup = events.groupby("user_id")["ts"].min()
    paid = events[events["event"] == "payment_done"].groupby("user_id")["ts"].min()
    delay = paid - signup.reindex(paid.index)
    converters = int((delay <= WINDOW).sum())
    # The sandbox's clock stands a minute after the slice's last event.
    clock = stamps.max() + pd.Timedelta(minutes=1)
    open_window = signup[signup + WINDOW > clock].index
    open_unconverted = {str(u) for u in open_window if u not in paid.index or paid[u] > clock}
    return {"users": signup.size, "converters": converters, "open_unconverted": open_unconverted}


@pytest.mark.slow
def test_the_main_job_turns_a_slice_of_simple_shop_into_next_best_actions(
    shop_slice: tuple[Path, pd.DataFrame], nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg
    from mlflow import MlflowClient

    from orchestration.definitions import defs
    from orchestration.settings import get_settings
    from orchestration.warehouse import connect
    from sandbox.runner import running_sandbox

    csv, sliced = shop_slice
    expected = _expected(sliced)
    assert expected["users"] == 478 and expected["converters"] == 68  # the slice as chosen

    with running_sandbox(
        "events_file",
        events_file=csv,
        conversion_event="payment_done",
        dirt=False,
        event_window_days=0,
        rate_limit_per_minute=None,
    ) as sandbox:
        for key, value in sandbox.env().items():
            monkeypatch.setenv(key, value)
        settings = get_settings()
        settings.prepare_home()
        with dg.DagsterInstance.get() as instance:
            result = (
                defs()
                .resolve_job_def("full_refresh")
                .execute_in_process(instance=instance, raise_on_error=False)
            )
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        attributes = sandbox.admin.attributes()
        contact_of = {
            ext: sandbox.store.contacts.ids[i] for ext, i in sandbox.store.external_index.items()
        }

    with connect(settings.warehouse, read_only=True) as con:
        users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
        converters = con.execute(
            "select count(*) from marts.fct_conversion_labels where converted_within_window"
        ).fetchone()[0]
        statuses = dict(
            con.execute(
                "select user_id, status from ml.next_best_actions where status <> 'converted'"
            ).fetchall()
        )
    assert users == expected["users"]
    assert converters == expected["converters"]

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    champion = client.get_model_version_by_alias("nextbest-everyone-7d", "champion")
    assert champion.version

    written = {
        user
        for user in expected["open_unconverted"]
        if attributes.get(contact_of[user], {}).get("nb_next_action")
    }
    # Every unconverted user whose window is open has an action in Intercom, or the warehouse
    # states why not; at least most of them get one.
    for user in expected["open_unconverted"] - written:
        assert statuses.get(user) not in (None, "recommended"), user
    assert len(written) >= 0.8 * len(expected["open_unconverted"])
    # Nobody outside that set carries an action: converted and closed-window users get none.
    carriers = {u for u, c in contact_of.items() if attributes.get(c, {}).get("nb_next_action")}
    assert carriers <= expected["open_unconverted"]
