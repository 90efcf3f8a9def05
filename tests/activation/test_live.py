"""The live loop's decisions: whom to update, the cursor, and run keys without a clock."""

from __future__ import annotations

import duckdb
import pytest

from orchestration.activation import store
from orchestration.activation.live import (
    ACTION_COMPLETED,
    CONVERTED,
    LiveCursor,
    completions,
    evaluate,
    search_query,
    warehouse_view,
)
from orchestration.activation.scope import CONTACT_IDS_TAG, contact_scope


class StubIntercom:
    """Search and events answers from fixed data, counting event reads."""

    def __init__(self, contacts, events):
        self.contacts, self.events = contacts, events
        self.queries, self.event_reads = [], []

    def search_contacts(self, query):
        self.queries.append(query)
        start = query["value"][0]["value"]
        return [
            c for c in self.contacts if c["updated_at"] > start or c.get("last_seen_at", 0) > start
        ]

    def list_events(self, *, intercom_user_id):
        self.event_reads.append(intercom_user_id)
        return sorted(self.events.get(intercom_user_id, []), key=lambda e: -e["created_at"])


def ev(name, at):
    return {"event_name": name, "created_at": at}


CONTACTS = [
    # c1 did its recommended action, c2 did something else, c3 paid, c4 was only written to.
    {"id": "c1", "updated_at": 1000, "last_seen_at": 990},
    {"id": "c2", "updated_at": 1010, "last_seen_at": 1005},
    {"id": "c3", "updated_at": 1020, "last_seen_at": 1020},
    {"id": "c4", "updated_at": 1030, "last_seen_at": 400},
    {"id": "c5", "updated_at": 1040, "last_seen_at": 1040},
]
EVENTS = {
    "c1": [ev("signup", 100), ev("invite_team", 990)],
    "c2": [ev("signup", 100), ev("open_docs", 1005)],
    "c3": [ev("signup", 100), ev("payment_done", 1020)],
    "c4": [ev("signup", 400)],
    "c5": [ev("invite_team", 1040)],
}
OUTSTANDING = {"c1": "invite_team", "c2": "invite_team", "c3": "create_project", "c4": "x"}
KNOWN = {"c1": 100, "c2": 100, "c3": 100, "c4": 400}


def tick(cursor, client=None, now=None):
    client = client or StubIntercom(CONTACTS, EVENTS)
    result = evaluate(
        cursor,
        client,
        latest_known=500,
        outstanding=OUTSTANDING,
        known_events=KNOWN,
        conversion_events={"payment_done"},
        lookback=0,
        server_now=None if now is None else (lambda: now),
    )
    return result, client


def test_completions_name_the_action_and_conversion():
    new = {"a": [ev("invite_team", 5)], "b": [ev("payment_done", 6)], "c": [ev("other", 7)]}
    found = completions(new, {"a": "invite_team", "b": "x", "c": "y"}, {"payment_done"})
    assert found == {"a": {ACTION_COMPLETED}, "b": {CONVERTED}}


def test_a_tick_starts_a_run_for_exactly_the_completed_and_converted_contacts():
    result, client = tick(LiveCursor())
    assert result.triggers == {"c1": {ACTION_COMPLETED}, "c3": {CONVERTED}}
    assert contact_scope(result.tags()) == ["c1", "c3"]
    # c4 was not seen since its last known event and c5 carries no recommendation: no reads.
    assert client.event_reads == ["c1", "c2", "c3"]
    # The first search starts from the warehouse's newest contact time.
    assert client.queries[0]["value"][0]["value"] == 500
    assert result.cursor.since == 1040
    assert result.cursor.watermarks == {"c1": 990, "c2": 1005, "c3": 1020}


def test_the_next_tick_with_nothing_new_starts_nothing_and_reads_no_events():
    first, _ = tick(LiveCursor())
    restored = LiveCursor.loads(first.cursor.dumps())
    second, client = tick(restored)
    assert second.triggers == {}
    assert second.run_key is None
    assert client.event_reads == []
    assert client.queries[0]["value"][0]["value"] == 1040


def test_a_contact_updated_this_second_is_left_for_the_next_tick():
    # At 1020 on the server, c3 (paid, updated at 1020) and c4, c5 (later) cannot be read by
    # a run's contact sync yet; c1 and c2 can.
    first, client = tick(LiveCursor(), now=1020)
    assert first.triggers == {"c1": {ACTION_COMPLETED}}
    assert first.deferred == 2  # c3 and c4 carry a recommendation, c5 does not
    assert client.event_reads == ["c1", "c2"]
    # The cursor stays before c3: c2's time, the newest of the contacts examined.
    assert first.cursor.since == 1010
    assert "c3" not in first.cursor.watermarks
    # A second later the next tick finds c3 again and starts its run.
    second, client = tick(LiveCursor.loads(first.cursor.dumps()), now=1041)
    assert second.triggers == {"c3": {CONVERTED}}
    assert second.deferred == 0
    assert second.cursor.since == 1040


def test_run_keys_come_from_the_cursor_so_a_re_evaluation_repeats_them():
    one, _ = tick(LiveCursor(since=500))
    two, _ = tick(LiveCursor(since=500))
    three, _ = tick(LiveCursor(since=499))
    assert one.run_key == two.run_key
    assert one.run_key != three.run_key
    assert one.run_key.startswith("live-500-")


def test_a_cursor_this_sensor_did_not_write_is_refused():
    with pytest.raises(ValueError, match="not a live-loop cursor"):
        LiveCursor.loads("12345")


def test_search_looks_back_for_intercom_lag_on_both_times():
    query = search_query(1000, 300)
    assert query == {
        "operator": "OR",
        "value": [
            {"field": "updated_at", "operator": ">", "value": 700},
            {"field": "last_seen_at", "operator": ">", "value": 700},
        ],
    }


def test_a_scope_tag_that_is_not_a_list_of_ids_is_an_error():
    assert contact_scope({}) is None
    with pytest.raises(ValueError):
        contact_scope({CONTACT_IDS_TAG: '{"a": 1}'})


def test_events_loaded_after_the_last_write_back_are_not_known_to_the_sensor():
    con = duckdb.connect()
    store.ensure_tables(con)
    con.execute("create schema raw")
    con.execute("create table raw.intercom_contacts (updated_at bigint, payload json)")
    con.execute("insert into raw.intercom_contacts values (1000, '{\"last_seen_at\": 1200}')")
    con.execute(
        "create table raw.intercom_events (contact_id varchar, created_at bigint, "
        "loaded_at timestamptz)"
    )
    noon = "2026-01-01 12:00:00+00"
    for contact_id, attribute, value in [
        ("c1", "nb_next_action", '"invite_team"'),
        ("c1", "nb_updated_at", "1767225600"),
        ("c2", "nb_next_action", '"create_project"'),
    ]:
        con.execute(
            f"insert into {store.STATE_TABLE} values (?, ?, ?, ?, 'r1')",
            [contact_id, attribute, value, noon],
        )
    for contact_id, created, loaded in [
        ("c1", 100, "2026-01-01 11:00:00+00"),
        # Loaded by a run scoped to other contacts, after c1's last write: still news.
        ("c1", 990, "2026-01-01 12:30:00+00"),
        ("c2", 200, "2026-01-01 11:00:00+00"),
        ("c2", 300, noon),
        ("c3", 400, "2026-01-01 11:00:00+00"),
    ]:
        con.execute(
            "insert into raw.intercom_events values (?, ?, ?)", [contact_id, created, loaded]
        )
    latest, outstanding, known = warehouse_view(con)
    assert latest == 1200
    assert outstanding == {"c1": "invite_team", "c2": "create_project"}
    assert known == {"c1": 100, "c2": 300}


class ListedIntercom(StubIntercom):
    """Events answered in the order given, as the API lists them (newest first)."""

    def list_events(self, *, intercom_user_id):
        self.event_reads.append(intercom_user_id)
        return list(self.events.get(intercom_user_id, []))


def test_an_event_without_a_readable_time_is_counted_and_the_rest_are_still_read():
    # Intercom's created_at is Unix seconds; an event holding text or null there cannot be
    # placed against the watermark. It must neither stop the tick nor hide the older events
    # listed after it.
    events = {
        "c1": [{"event_name": "invite_team", "created_at": "soon"}, ev("invite_team", 990)],
        "c3": [
            ev("open_docs", 1019),
            {"event_name": "open_docs", "created_at": None},
            ev("payment_done", 1018),
            ev("signup", 100),
        ],
    }
    result, _ = tick(LiveCursor(), ListedIntercom(CONTACTS, events))

    assert result.triggers == {"c1": {ACTION_COMPLETED}, "c3": {CONVERTED}}
    assert result.events_unreadable == 2
    assert result.events_read == 3
    assert result.cursor.watermarks == {"c1": 990, "c3": 1019}
    assert "2 events without a readable time" in result.numbers()


def test_a_search_result_without_an_id_is_skipped_and_counted_not_a_crash():
    # The search answer's contacts are objects with an `id`; one without (or with a null id)
    # cannot be matched to a recommendation and must not stop every later tick.
    contacts = [
        {"updated_at": 1050, "last_seen_at": 1050},
        {"id": None, "updated_at": 1060},
        *CONTACTS,
    ]
    result, _ = tick(LiveCursor(), StubIntercom(contacts, EVENTS))

    assert result.triggers == {"c1": {ACTION_COMPLETED}, "c3": {CONVERTED}}
    assert result.contacts_without_id == 2
    # Their times are not trusted either: the cursor moves as far as the contacts with ids.
    assert result.cursor.since == 1040
    assert "2 contacts without an id skipped" in result.numbers()
