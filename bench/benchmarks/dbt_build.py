"""`dbt build` of the whole project against the same transformation written in pandas.

Both start from one raw layer: the synthetic log (100,000 users, about 5,000,000 events by
default) written by `sandbox.export.write_raw`. The peer does what the marts do: identity by
metadata and unique e-mail, first real payments, sessions, labels and point-in-time
features, and writes its three outputs to Parquet. Each side runs in its own process, so its
peak memory is its own; both report the same counts, which are compared before any figure
is returned. The build is timed as the hourly run does it: every model, data test and unit
test, with the project already parsed; the parse is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psutil

from bench.harness import Figure, benchmark

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
USERS = 100_000
DAY = 86_400


def _payload_fields(frame: pd.DataFrame, fields: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Columns read out of the JSON payloads, one per (name: path)."""
    parsed = [json.loads(p) for p in frame["payload"]]

    def dig(obj: dict, path: tuple[str, ...]) -> object:
        for key in path:
            obj = obj.get(key) if isinstance(obj, dict) else None
        return obj

    out = pd.DataFrame({"id": frame["id"].to_numpy()})
    for name, path in fields.items():
        out[name] = [dig(p, path) for p in parsed]
    return out


def _first_payments(con: duckdb.DuckDBPyConnection, user_of_email: pd.Series) -> pd.DataFrame:
    raw = {t: con.execute(f"select id, payload from raw.{t}").df() for t in ("stripe_customers",
           "stripe_invoices", "stripe_charges", "stripe_refunds")}  # fmt: skip
    customers = _payload_fields(
        raw["stripe_customers"], {"app_user_id": ("metadata", "app_user_id"), "email": ("email",)}
    )
    email = customers["email"].fillna("").str.strip().str.lower()
    customers["user_id"] = customers["app_user_id"].where(
        customers["app_user_id"].notna(), email.map(user_of_email)
    )
    invoices = _payload_fields(
        raw["stripe_invoices"],
        {"customer": ("customer",), "status": ("status",), "amount": ("amount_paid",),
         "currency": ("currency",), "paid_at": ("status_transitions", "paid_at")},
    )  # fmt: skip
    charges = _payload_fields(
        raw["stripe_charges"],
        {"customer": ("customer",), "status": ("status",), "amount": ("amount",),
         "refunded_amount": ("amount_refunded",), "refunded": ("refunded",),
         "currency": ("currency",), "created": ("created",)},
    )  # fmt: skip
    refunds = _payload_fields(raw["stripe_refunds"], {"charge": ("charge",), "amount": ("amount",)})
    by_charge = refunds.groupby("charge")["amount"].sum()
    refunded_sum = charges["id"].map(by_charge).fillna(0)
    refunded = (charges["refunded_amount"].fillna(0) >= charges["amount"]) | (
        refunded_sum >= charges["amount"]
    )
    charges["full"] = charges["refunded"].fillna(False).astype(bool) | (
        (charges["amount"] > 0) & refunded
    )
    full = charges[charges["full"]]
    matched = invoices.merge(full, on=["customer", "currency", "amount"], suffixes=("", "_c"))
    taken_back = set(matched.loc[(matched["created"] - matched["paid_at"]).abs() <= 3600, "id"])
    paid = invoices[
        (invoices["status"] == "paid") & (invoices["amount"] > 0) & ~invoices["id"].isin(taken_back)
    ]
    ok = charges[(charges["status"] == "succeeded") & (charges["amount"] > 0) & ~charges["full"]]
    payments = pd.concat(
        [
            paid[["customer"]].assign(paid=paid["paid_at"]),
            ok[["customer"]].assign(paid=ok["created"]),
        ]
    )
    payments["user_id"] = payments["customer"].map(customers.set_index("id")["user_id"])
    return payments.dropna(subset=["user_id", "paid"]).groupby("user_id")["paid"].min()


def pandas_peer(warehouse: str, out_dir: str, window_days: int = 7, gap_minutes: int = 30) -> dict:
    """The transformation in pandas; returns the counts the dbt marts must match."""
    con = duckdb.connect(warehouse, read_only=True)
    contacts = _payload_fields(
        con.execute("select id, payload from raw.intercom_contacts").df(),
        {"external_id": ("external_id",), "email": ("email",), "signed": ("signed_up_at",),
         "created": ("created_at",)},
    )  # fmt: skip
    contacts["user_id"] = contacts["external_id"].fillna(contacts["id"])
    contacts["signup"] = contacts["signed"].fillna(contacts["created"]).astype("int64")
    email = contacts["email"].fillna("").str.strip().str.lower()
    unique = email[email != ""].value_counts()
    unique_emails = email.isin(unique[unique == 1].index)
    user_of_email = pd.Series(
        contacts.loc[unique_emails, "user_id"].to_numpy(), index=email[unique_emails]
    )
    first_paid = _first_payments(con, user_of_email)
    events = con.execute(
        "select id, contact_id, event_name, created_at from raw.intercom_events"
    ).df()
    con.close()
    events["user_id"] = events["contact_id"].map(contacts.set_index("id")["user_id"])
    events = events.dropna(subset=["user_id"])
    events = events.groupby(["user_id", "event_name", "created_at"], as_index=False)["id"].min()
    events = events.sort_values(["user_id", "created_at", "id"], ignore_index=True)
    signup = contacts.set_index("user_id")["signup"]
    events["signup"] = events["user_id"].map(signup).to_numpy()
    # Sessions: a gap above the threshold starts one; exactly the threshold does not.
    new_user = events["user_id"].ne(events["user_id"].shift())
    gap = events["created_at"].diff()
    events["start"] = new_user | (gap > gap_minutes * 60)
    events["session_number"] = events.groupby("user_id")["start"].cumsum()
    events["step_number"] = events.groupby("user_id").cumcount() + 1
    start_epoch = events["created_at"].where(events["start"]).ffill().astype("int64")
    keys = events["user_id"].astype(str) + "|" + start_epoch.astype(str)
    session_ids = {k: hashlib.md5(k.encode()).hexdigest() for k in keys.unique()}
    events["session_id"] = keys.map(session_ids)
    events["seconds_since_signup"] = events["created_at"] - events["signup"]
    day = np.floor(events["seconds_since_signup"] / DAY)
    events["active_days"] = (new_user | day.ne(day.shift())).groupby(events["user_id"]).cumsum()
    # Labels.
    data_end = max(int(events["created_at"].max()), int(first_paid.max()))
    labels = pd.DataFrame({"signup": signup})
    labels["paid"] = labels.index.map(first_paid)
    labels["window_end"] = labels["signup"] + window_days * DAY
    labels["converted"] = labels["paid"] <= labels["window_end"]
    labels["censored"] = ~labels["converted"] & (labels["window_end"] > data_end)
    # Point-in-time state after each event: running counts per action.
    counts = pd.get_dummies(events["event_name"], dtype="int32")
    counts = counts.groupby(events["user_id"].to_numpy()).cumsum()
    counts.columns = [f"n_action__{c}" for c in counts.columns]
    state = pd.concat([events, counts], axis=1)
    state["previous_action"] = state.groupby("user_id")["event_name"].shift()
    ends = state[state["session_number"].ne(state.groupby("user_id")["session_number"].shift(-1))]
    session_snaps = ends[["user_id", "created_at", "step_number"]].rename(
        columns={"created_at": "snapshot_at", "step_number": "last_step"}
    )
    session_snaps["kind"] = "session_end"
    days = pd.DataFrame(
        {
            "user_id": np.repeat(labels.index.to_numpy(), window_days),
            "snapshot_at": (
                np.repeat(labels["signup"].to_numpy(), window_days)
                + np.tile(np.arange(window_days), len(labels)) * DAY
            ),
        }
    ).sort_values("snapshot_at")
    located = pd.merge_asof(
        days,
        state[["user_id", "created_at", "step_number"]].sort_values("created_at", kind="stable"),
        left_on="snapshot_at",
        right_on="created_at",
        by="user_id",
    )
    day_snaps = located[["user_id", "snapshot_at"]].assign(
        last_step=located["step_number"], kind="day_boundary"
    )
    snaps = pd.concat([session_snaps, day_snaps], ignore_index=True)
    snaps = snaps.join(labels, on="user_id")
    keep = (
        (snaps["snapshot_at"] >= snaps["signup"])
        & (snaps["snapshot_at"] <= snaps["window_end"])
        & (snaps["snapshot_at"] <= data_end)
        & (snaps["paid"].isna() | (snaps["snapshot_at"] < snaps["paid"]))
    )
    snaps = snaps[keep]
    features = snaps.merge(
        state.drop(columns=["signup"]),
        left_on=["user_id", "last_step"],
        right_on=["user_id", "step_number"],
        how="left",
    )
    features["is_training"] = ~features["censored"]
    out = Path(out_dir)
    events.to_parquet(out / "journeys.parquet")
    labels.to_parquet(out / "labels.parquet")
    features.to_parquet(out / "features.parquet")
    return {
        "events": len(events),
        "sessions": int(events["start"].sum()),
        "converted": int(labels["converted"].sum()),
        "snapshots": len(features),
        "snapshot_events": int(features["step_number"].fillna(0).sum()),
    }


def _measured(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run `command`; return its wall seconds, CPU seconds, peak memory (MB), stdout.

    CPU seconds are user plus system time of the process and the children it waited for: on a
    shared machine they move far less with the load than wall seconds do. Peak memory is the
    whole process tree's.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{stdout[-4000:]}")
    return seconds, cpu, peak / 2**20, stdout


def _prepare(users: int, folder: Path) -> tuple[Path, int]:
    from orchestration.settings import get_settings
    from orchestration.warehouse import connect
    from sandbox.export import write_raw
    from sandbox.mapping import build_store
    from sandbox.synthetic import synthetic_event_log

    event_log = synthetic_event_log(users, 0, get_settings().cache_dir)
    store = build_store(event_log, dirt=False, event_window_days=0, signup="signed_up")
    warehouse = folder / "warehouse.duckdb"
    con = connect(warehouse)
    try:
        write_raw(store, con)
    finally:
        con.close()
    return warehouse, len(event_log.events)


def _slowest_nodes(run_results: Path, count: int = 5) -> str:
    """The `count` slowest nodes of a dbt run and the unit tests' total, from run_results.json.

    The per-node seconds are wall times with two nodes running at once, so they add up to more
    than the build's own wall time.
    """
    results = json.loads(run_results.read_text())["results"]
    unit = [r["execution_time"] for r in results if r["unique_id"].startswith("unit_test.")]
    slowest = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:count]
    named = ", ".join(
        f"{r['unique_id'].split('.')[2]} {r['execution_time']:.0f} s" for r in slowest
    )
    return f"slowest: {named}; {len(unit)} unit tests {sum(unit):.0f} s"


def _dbt_counts(warehouse: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            "events": con.execute("select count(*) from marts.fct_user_journeys").fetchone()[0],
            "sessions": con.execute("select count(*) from marts.fct_sessions").fetchone()[0],
            "converted": con.execute(
                "select count(*) from marts.fct_conversion_labels where converted_within_window"
            ).fetchone()[0],
            "snapshots": con.execute("select count(*) from marts.fct_user_features").fetchone()[0],
            "snapshot_events": int(
                con.execute("select sum(n_events) from marts.fct_user_features").fetchone()[0]
            ),
        }


@benchmark("dbt_build", "dbt build of every model and test against the same logic in pandas")
def dbt_build() -> list[Figure]:
    users = int(os.environ.get("NEXTBEST_BENCH_USERS", USERS))
    with tempfile.TemporaryDirectory(prefix="nextbest-dbt-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        warehouse, n_events = _prepare(users, folder)
        prepared = time.perf_counter() - started
        env = os.environ | {"NEXTBEST_WAREHOUSE": str(warehouse)}
        # Other work on the machine slows both sides: the load average goes with the figures.
        load_before = os.getloadavg()[0]
        peer_s, peer_cpu, peer_mb, peer_out = _measured(
            [sys.executable, "-m", "bench.benchmarks.dbt_build", str(warehouse), tmp], env
        )
        dbt = [str(Path(sys.executable).parent / "dbt")]
        where = ["--project-dir", str(ROOT), "--profiles-dir", str(ROOT)]
        where += ["--target-path", str(folder / "target"), "--log-path", str(folder / "logs")]
        # The hourly build parses only what changed since the last run (orchestration keeps
        # dbt's partial parse): the parse of a new checkout is timed apart and not added in.
        parse_s, _, _, _ = _measured([*dbt, "parse", *where], env)
        load_between = os.getloadavg()[0]
        dbt_s, dbt_cpu, dbt_mb, _ = _measured([*dbt, "build", *where, "--threads", "2"], env)
        load_after = os.getloadavg()[0]
        slowest = _slowest_nodes(folder / "target" / "run_results.json")
        peer_counts = json.loads(peer_out.strip().splitlines()[-1])
        counts = _dbt_counts(warehouse)
    if counts != peer_counts:
        raise AssertionError(f"dbt and pandas disagree: dbt {counts}, pandas {peer_counts}")
    size = f"{users:,} users, {n_events:,} events, {counts['snapshots']:,} snapshots"
    load = (
        f"1-minute load average {load_before:.1f} before pandas, {load_between:.1f} before dbt, "
        f"{load_after:.1f} after"
    )
    note = (
        f"{size}; raw layer written in {prepared:.0f} s and dbt parse in {parse_s:.0f} s (neither"
        f" timed); target < 120 s, 3x; {load}"
    )
    log.info(
        "dbt build %.0f s (%.0f CPU s), pandas %.0f s (%.0f CPU s); %s; %s",
        dbt_s, dbt_cpu, peer_s, peer_cpu, load, slowest,
    )  # fmt: skip
    return [
        Figure("dbt build seconds", "s", dbt_s, "pandas", peer_s, note=f"{note}; {slowest}"),
        # pandas runs on one core, DuckDB on both: CPU seconds say how much work each side
        # does, wall seconds how long a build waits.
        Figure("dbt build CPU seconds", "s", dbt_cpu, "pandas", peer_cpu, note=f"{size}; {load}"),
        Figure("peak memory", "MB", dbt_mb, "pandas", peer_mb, note=size),
    ]


if __name__ == "__main__":  # the peer's own process: python -m bench.benchmarks.dbt_build
    print(json.dumps(pandas_peer(sys.argv[1], sys.argv[2])))
