"""A synthetic onboarding log with a planted, exactly known best next action.

The process, in hours since sign-up, over a 7-day window (168 one-hour slots):

- Every user signs up (a `signed_up` event at hour 0).
- Each catalogue action `a` is first done at the first arrival of a Poisson process with rate
  `r_a(t)`, constant within each hour and decaying by day; arrivals are independent across
  actions and of the past. Repeats of an action already done follow freely (they never change
  the state).
- Conversion has a hazard `λ(t) = λ0 + Σ_{a done before t} β_a(t)`. `β_a` is zero for the
  neutral actions, positive for the key ones, and for some only within the first hours
  (doing them late helps nothing). Hazards add, so the conversion time is the minimum of
  independent arrivals: a base one with rate `λ0`, and one per action done, with rate `β_a`
  from the moment it was done. The simulation draws exactly that.

Given the state at time `s` (set `S` of actions done, not converted yet), the probability of
converting before the window ends is therefore exact and cheap::

    P = 1 - exp(-λ0 (W - s)) · Π_{a ∈ S} exp(-∫_s^W β_a) · Π_{a ∉ S} M_a(s)

where `M_a(s) = E[exp(-∫_{τ_a}^W β_a)]` over the first arrival `τ_a > s`, integrated in closed
form slot by slot. The best next action is the `a ∉ S` whose immediate addition raises `P` most.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sandbox.datasets import EventLog

log = logging.getLogger(__name__)

HOURS = 168
WINDOW_DAYS = 7
START = 1_704_067_200  # 2024-01-01 00:00 UTC: sign-ups start here
SIGNUP_SPAN_DAYS = 60
CONVERSION_EVENT = "subscription_started"
SIGNUP_EVENT = "signed_up"

# name: (share of users doing it within the window, conversion hazard per hour once done,
#        hours since sign-up during which that hazard applies)
ACTIONS: dict[str, tuple[float, float, float]] = {
    "connect_integration": (0.35, 0.0060, 48),
    "invite_teammate": (0.30, 0.0020, HOURS),
    "import_data": (0.40, 0.0050, 24),
    "create_project": (0.60, 0.0008, HOURS),
    "watch_tutorial": (0.50, 0.0004, HOURS),
    "complete_profile": (0.70, 0.0002, HOURS),
    "view_dashboard": (0.85, 0.0, HOURS),
    "open_settings": (0.60, 0.0, HOURS),
    "read_docs": (0.45, 0.0, HOURS),
    "search": (0.55, 0.0, HOURS),
    "view_pricing": (0.40, 0.0, HOURS),
    "edit_item": (0.50, 0.0, HOURS),
    "share_link": (0.25, 0.0, HOURS),
    "upload_file": (0.35, 0.0, HOURS),
    "create_report": (0.30, 0.0, HOURS),
    "set_notification": (0.30, 0.0, HOURS),
    "open_help": (0.35, 0.0, HOURS),
    "change_theme": (0.20, 0.0, HOURS),
    "export_csv": (0.20, 0.0, HOURS),
    "mobile_login": (0.25, 0.0, HOURS),
}
BASE_HAZARD = 0.0002  # per hour: about 3% convert with no action at all
DAILY_DECAY = 0.35  # the rate of first doing an action falls to 35% each day
REPEATS_PER_ACTION = 5.3  # mean extra occurrences of an action once done


def _rate_shape() -> np.ndarray:
    hours = np.arange(HOURS)
    return DAILY_DECAY ** (hours / 24.0)


@dataclass
class SyntheticTruth:
    """The planted ground truth of a synthetic log.

    Attributes:
        catalogue: The recommendable actions (the conversion and sign-up events excluded).
        conversion_event: Name of the conversion event in the log.
        window_days: The conversion window after sign-up.
        signup_event: Name of the sign-up event (every user's first event).
    """

    catalogue: list[str] = field(default_factory=lambda: list(ACTIONS))
    conversion_event: str = CONVERSION_EVENT
    window_days: int = WINDOW_DAYS
    signup_event: str = SIGNUP_EVENT

    def __post_init__(self) -> None:
        shape = _rate_shape()
        shares = np.array([ACTIONS[a][0] for a in self.catalogue])
        # Pick each base rate so that P(done within the window) = share.
        base = -np.log1p(-shares) / shape.sum()
        self._rate = base[:, None] * shape[None, :]  # (actions, hours)
        beta = np.array([ACTIONS[a][1] for a in self.catalogue])
        until = np.array([ACTIONS[a][2] for a in self.catalogue])
        self._beta = beta[:, None] * (np.arange(HOURS)[None, :] < until[:, None])
        zero = np.zeros((len(self.catalogue), 1))
        self._R = np.hstack([zero, np.cumsum(self._rate, axis=1)])  # at hour boundaries
        self._B = np.hstack([zero, np.cumsum(self._beta, axis=1)])
        # G(h) = ∫_h^W r(v) exp(-R(v) + B(v)) dv at the boundaries, slot by slot.
        slot = self._slot_integral(
            np.arange(HOURS)[None, :].repeat(len(self.catalogue), 0).astype(float),
            np.arange(1, HOURS + 1)[None, :].repeat(len(self.catalogue), 0).astype(float),
        )
        self._G = np.hstack([np.cumsum(slot[:, ::-1], axis=1)[:, ::-1], zero])
        self._index = {a: k for k, a in enumerate(self.catalogue)}

    # Cumulative functions at arbitrary times (hours, arrays of shape (actions, n)).
    def _cum(self, table: np.ndarray, hours: np.ndarray) -> np.ndarray:
        hours = np.clip(hours, 0, HOURS)
        j = np.minimum(hours.astype(int), HOURS - 1)
        rows = np.arange(table.shape[0])[:, None]
        slope = table[rows, j + 1] - table[rows, j]
        return table[rows, j] + slope * (hours - j)

    def _slot_integral(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """∫ r e^{-R+B} over [start, end] lying within one slot, per action and column."""
        rows = np.arange(self._rate.shape[0])[:, None]
        j = np.minimum(start.astype(int), HOURS - 1)
        r, b = self._rate[rows, j], self._beta[rows, j]
        level = np.exp(-self._cum(self._R, start) + self._cum(self._B, start))
        k, length = r - b, end - start
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(np.abs(k) > 1e-12, -np.expm1(-k * length) / k, length)
        return r * level * factor

    def _terms(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per action and time: the factor if already done, and `M_a` if not (survivals)."""
        hours = np.clip(np.asarray(hours, dtype=float), 0, HOURS)[None, :]
        hours = hours.repeat(len(self.catalogue), 0)
        r_now, b_now = self._cum(self._R, hours), self._cum(self._B, hours)
        done = np.exp(-(self._B[:, -1:] - b_now))
        slot_end = np.minimum(np.floor(hours) + 1, HOURS)
        partial = self._slot_integral(hours, slot_end)
        rows = np.arange(len(self.catalogue))[:, None]
        g = partial + self._G[rows, slot_end.astype(int)]
        g = np.where(hours >= HOURS, 0.0, g)
        not_done = np.exp(-(self._R[:, -1:] - r_now)) + np.exp(r_now - self._B[:, -1:]) * g
        return done, not_done

    def _probabilities(
        self, done_mask: np.ndarray, hours: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(convert) now and the gain of each action, for users (rows of `done_mask`)."""
        done_f, not_done_f = self._terms(hours)
        done_f, not_done_f = done_f.T, not_done_f.T  # (users, actions)
        base = np.exp(-BASE_HAZARD * (HOURS - np.clip(hours, 0, HOURS)))
        survival = base * np.prod(np.where(done_mask, done_f, not_done_f), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(not_done_f > 0, done_f / not_done_f, 1.0)
        gain = survival[:, None] * (1.0 - ratio)
        gain = np.where(done_mask, -np.inf, gain)
        return 1.0 - survival, gain

    def _mask(self, actions_done: Sequence[str]) -> np.ndarray:
        mask = np.zeros((1, len(self.catalogue)), dtype=bool)
        for action in actions_done:
            if action in self._index:
                mask[0, self._index[action]] = True
        return mask

    def conversion_probability(
        self, actions_done: Sequence[str], seconds_since_signup: float
    ) -> float:
        """True probability that a user in this state converts before the window ends.

        Args:
            actions_done: Catalogue actions done so far (others are ignored).
            seconds_since_signup: Time since sign-up; the user has not converted yet.

        Returns:
            The probability, 0 once the window has closed.
        """
        hours = np.array([seconds_since_signup / 3600.0])
        probability, _ = self._probabilities(self._mask(actions_done), hours)
        return float(probability[0])

    def best_action(self, actions_done: Sequence[str], seconds_since_signup: float) -> str:
        """The action not yet done whose doing now raises the conversion probability most.

        Ties (for instance once the window has closed) go to the earlier catalogue action;
        the empty string means every action is done.
        """
        hours = np.array([seconds_since_signup / 3600.0])
        mask = self._mask(actions_done)
        if mask.all():
            return ""
        _, gain = self._probabilities(mask, hours)
        return self.catalogue[int(np.argmax(gain[0]))]

    def best_actions(
        self, done_mask: np.ndarray, seconds_since_signup: np.ndarray
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Vectorised `best_action`: names, probabilities now and best gains, one per row."""
        hours = np.asarray(seconds_since_signup, dtype=float) / 3600.0
        probability, gain = self._probabilities(done_mask, hours)
        best = np.argmax(gain, axis=1)
        names = [
            "" if done_mask[k].all() else self.catalogue[b] for k, b in enumerate(best.tolist())
        ]
        return names, probability, np.max(gain, axis=1)


def _first_arrival(table: np.ndarray, start: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Hours at which the cumulative `table` (per hour boundary) rises by `draws` from `start`.

    `np.inf` when it never does within the window.
    """
    h = np.clip(start, 0, HOURS)
    j = np.minimum(h.astype(int), HOURS - 1)
    level = table[j] + (table[j + 1] - table[j]) * (h - j) + draws
    k = np.searchsorted(table, level, side="left")  # first boundary reaching the level
    out = np.full(level.shape, np.inf)
    ok = (k <= HOURS) & (level <= table[-1]) & np.isfinite(start)
    k = np.clip(k, 1, HOURS)
    lo, hi = table[k - 1], table[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(hi > lo, (level - lo) / (hi - lo), 0.0)
    out[ok] = np.maximum((k - 1 + frac)[ok], h[ok])
    return out


def generate(
    users: int,
    seed: int = 0,
    *,
    out_dir: Path | str | None = None,
    data_end: int | None = None,
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """Simulate `users` onboarding journeys with the planted truth (see the module doc).

    Args:
        users: How many users; sign-ups spread evenly at random over 60 days from 2024-01-01.
        seed: Seed; the same users and seed give the same log.
        out_dir: When given, writes `events.parquet` and `best_actions.csv` there.
        data_end: Unix seconds where the data stops (journeys after it are cut off); default
            the end of the sign-up span, so the last users' windows are still open.

    Returns:
        The log (`user_id`, `event`, `timestamp` in Unix seconds, sorted by user and time; the
        conversion rows included) and the truth.
    """
    truth = SyntheticTruth()
    rng = np.random.default_rng(seed)
    n_actions = len(truth.catalogue)
    end = START + SIGNUP_SPAN_DAYS * 86400 if data_end is None else int(data_end)
    signup = START + np.sort(rng.integers(0, SIGNUP_SPAN_DAYS * 86400, size=users))
    # First arrivals of every action (hours; inf = not within the window).
    tau = np.empty((users, n_actions))
    for a in range(n_actions):
        tau[:, a] = _first_arrival(truth._R[a], np.zeros(users), rng.exponential(size=users))
    # Conversion: the minimum of the base arrival and one arrival per action done.
    convert = rng.exponential(size=users) / BASE_HAZARD
    for a in range(n_actions):
        if truth._B[a, -1] <= 0:
            continue
        arrival = _first_arrival(truth._B[a], tau[:, a], rng.exponential(size=users))
        convert = np.minimum(convert, arrival)
    converted = convert < HOURS
    # Events: sign-up, first arrivals, repeats, conversion; all before the data's end.
    user_ix, action_ix = np.nonzero(np.isfinite(tau))
    first_h = tau[user_ix, action_ix]
    repeats = rng.poisson(REPEATS_PER_ACTION, size=len(user_ix))
    rep_user = np.repeat(user_ix, repeats)
    rep_action = np.repeat(action_ix, repeats)
    rep_start = np.repeat(first_h, repeats)
    rep_h = rep_start + rng.random(len(rep_user)) * (HOURS - rep_start)
    conv_users = np.flatnonzero(converted)
    codes = np.concatenate(
        [
            np.full(users, n_actions, dtype=np.int16),  # signed_up
            action_ix.astype(np.int16),
            rep_action.astype(np.int16),
            np.full(len(conv_users), n_actions + 1, dtype=np.int16),
        ]
    )
    who = np.concatenate([np.arange(users), user_ix, rep_user, conv_users]).astype(np.int64)
    hours = np.concatenate([np.zeros(users), first_h, rep_h, convert[conv_users]])
    stamp = signup[who] + np.floor(hours * 3600).astype(np.int64)
    keep = stamp <= end
    who, codes, stamp = who[keep], codes[keep], stamp[keep]
    order = np.lexsort((codes == n_actions + 1, stamp, who))
    who, codes, stamp = who[order], codes[order], stamp[order]
    width = len(str(users - 1 if users > 1 else 1))
    user_names = [f"u{k:0{width}d}" for k in range(users)]
    names = [*truth.catalogue, SIGNUP_EVENT, CONVERSION_EVENT]
    frame = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(who, categories=user_names),
            "event": pd.Categorical.from_codes(codes.astype(np.int64), categories=names),
            "timestamp": stamp,
        }
    )
    log.info(
        "synthetic: %d users, %d events, %.1f%% convert within %d days",
        users,
        len(frame),
        100 * converted.mean(),
        WINDOW_DAYS,
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out / "events.parquet", index=False)
        _best_action_file(truth, signup, tau, convert, end, user_names).to_csv(
            out / "best_actions.csv", index=False
        )
    return frame, truth


def _best_action_file(
    truth: SyntheticTruth,
    signup: np.ndarray,
    tau: np.ndarray,
    convert: np.ndarray,
    end: int,
    user_names: list[str],
) -> pd.DataFrame:
    """One row per user: its best action at its state at the data's end, and P(convert) now."""
    elapsed = np.clip(end - signup, 0, None).astype(float)
    hours = np.minimum(elapsed / 3600.0, HOURS)
    observed_hours = np.floor(hours * 3600) / 3600
    # State at the data's end: actions whose (whole-second) time is not after it.
    done = np.floor(tau * 3600) <= np.floor(observed_hours * 3600)[:, None]
    names, probability, gain = truth.best_actions(done, observed_hours * 3600)
    converted = np.floor(convert * 3600) <= observed_hours * 3600
    status = np.where(converted, "converted", np.where(hours >= HOURS, "window_closed", "open"))
    probability = np.where(status == "open", probability, 0.0)
    return pd.DataFrame(
        {
            "user_id": user_names,
            "best_action": names,
            "true_probability": probability,
            "probability_gain": np.where(status == "open", gain, 0.0),
            "seconds_since_signup": (observed_hours * 3600).astype(np.int64),
            "status": status,
        }
    )


def synthetic_event_log(users: int, seed: int, cache_dir: Path) -> EventLog:
    """The synthetic log as a sandbox dataset, cached with its truth under the cache folder."""
    folder = Path(cache_dir) / "synthetic" / f"users{users}_seed{seed}"
    path = folder / "events.parquet"
    if path.exists() and (folder / "best_actions.csv").exists():
        frame = pd.read_parquet(path)
    else:
        frame, _ = generate(users, seed, out_dir=folder)
    return EventLog(name="synthetic", events=frame, conversion_event=CONVERSION_EVENT)
