"""The synthetic generator: deterministic, and its truth agrees with what it simulates."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from sandbox.datasets import EventLog
from sandbox.export import write_raw
from sandbox.mapping import build_store
from sandbox.synthetic import HOURS, START, SyntheticTruth, generate


@pytest.fixture(scope="module")
def long_run():
    # Data ends long after the last window, so every journey is complete.
    return generate(30_000, seed=5, data_end=START + 200 * 86400)


def test_same_seed_same_log_and_another_seed_another(tmp_path):
    a, _ = generate(500, seed=1)
    b, _ = generate(500, seed=1)
    c, _ = generate(500, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_truth_at_sign_up_matches_the_simulated_conversion_share(long_run):
    log, truth = long_run
    converted = log.loc[log["event"] == truth.conversion_event, "user_id"].nunique()
    share = converted / 30_000
    expected = truth.conversion_probability([], 0)
    assert 0.10 <= expected <= 0.30
    # Four standard errors of a share near 0.27 over 30,000 users.
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / 30_000)


def test_truth_mid_journey_matches_the_simulated_outcomes(long_run):
    log, truth = long_run
    s = 24 * 3600
    frame = log.assign(user_id=log["user_id"].astype(str), event=log["event"].astype(str))
    signup = frame.groupby("user_id")["timestamp"].min()
    frame["since"] = frame["timestamp"] - frame["user_id"].map(signup)
    conv = frame[frame["event"] == truth.conversion_event].set_index("user_id")["since"]
    alive = signup.index[~signup.index.isin(conv[conv <= s].index)]
    before = frame[(frame["since"] <= s) & frame["event"].isin(truth.catalogue)]
    done = before.groupby("user_id")["event"].agg(set)
    probabilities = [truth.conversion_probability(done.get(u, set()), s) for u in alive]
    outcome = conv.reindex(alive).between(s, HOURS * 3600, inclusive="right")
    expected, observed = float(np.mean(probabilities)), float(outcome.mean())
    assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(alive))


def test_planted_effects_are_large_for_key_actions_early_and_nil_for_neutral_ones():
    truth = SyntheticTruth()
    assert len(truth.catalogue) == 20 and truth.conversion_event not in truth.catalogue
    base = truth.conversion_probability([], 3600)
    gains = {a: truth.conversion_probability([a], 3600) - base for a in truth.catalogue}
    assert gains["connect_integration"] > 0.1 and gains["invite_teammate"] > 0.1
    assert gains["view_dashboard"] == pytest.approx(0.0, abs=1e-12)
    assert truth.best_action([], 3600) == max(gains, key=gains.get)
    # connect_integration helps only during the first 48 hours.
    late = truth.conversion_probability(["connect_integration"], 60 * 3600)
    assert late == pytest.approx(truth.conversion_probability([], 60 * 3600))
    assert truth.conversion_probability(["invite_teammate"], 7 * 86400) == 0.0


def test_ground_truth_file_names_one_best_action_per_user(tmp_path):
    log, truth = generate(2_000, seed=3, out_dir=tmp_path)
    best = pd.read_csv(tmp_path / "best_actions.csv", keep_default_na=False)
    assert sorted(best["user_id"]) == sorted(log["user_id"].astype(str).unique())
    assert best["user_id"].is_unique
    assert best["best_action"].isin(truth.catalogue).all()
    open_users = best[best["status"] == "open"]
    assert len(open_users) > 0
    row = open_users.iloc[0]
    frame = log[(log["user_id"].astype(str) == row["user_id"])]
    signup = frame["timestamp"].min()
    done = set(
        frame.loc[
            frame["event"].astype(str).isin(truth.catalogue)
            & (frame["timestamp"] - signup <= row["seconds_since_signup"]),
            "event",
        ].astype(str)
    )
    assert truth.best_action(done, row["seconds_since_signup"]) == row["best_action"]
    assert truth.conversion_probability(done, row["seconds_since_signup"]) == pytest.approx(
        row["true_probability"]
    )


def test_export_writes_the_raw_layer_like_a_full_sync():
    log, _ = generate(300, seed=4)
    store = build_store(EventLog("synthetic", log, "subscription_started"), event_window_days=0)
    con = duckdb.connect()
    counts = write_raw(store, con)
    distinct = log.assign(u=log["user_id"].astype(str), e=log["event"].astype(str))
    distinct = distinct.drop_duplicates(["u", "e", "timestamp"])
    assert counts["intercom_events"] == len(distinct)
    assert counts["intercom_contacts"] == 300
    row = con.execute(
        "select id, contact_id, event_name, created_at from raw.intercom_events limit 1"
    ).fetchall()[0]
    key = f"{row[1]}|{row[2]}|{row[3]}"
    assert row[0] == hashlib.md5(key.encode()).hexdigest()
    customers = con.execute("select count(*) from raw.stripe_customers").fetchall()[0][0]
    assert customers == len(store.stripe["customers"].objects)
