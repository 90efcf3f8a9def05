"""`import-events`: rows keyed by an e-mail key one event whatever the e-mail's case."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb

from orchestration.ingest.import_events import ImportReport, import_events
from orchestration.warehouse import warehouse

T = 1_577_872_800  # 2020-01-01 10:00:00 UTC


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _events(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return sorted(
        con.execute(
            "select id, email, event_name, created_at, source from raw.intercom_events"
        ).fetchall()
    )


def _store_as_before(con: duckdb.DuckDBPyConnection, event_id: str, email: str) -> None:
    # A row as versions that kept the e-mail's case in the key stored it.
    payload = {"event_name": "cart", "created_at": T, "email": email, "user_id": None}
    con.execute(
        "insert into raw.intercom_events values (?, null, null, null, ?, 'cart', ?, ?, "
        "'import', 'old', now())",
        [event_id, email, T, json.dumps(payload)],
    )


def _import_over_old_keys(
    tmp_path: Path,
    csv_text: str,
    old_emails: list[str],
    synced_contact: tuple[str, str] | None = None,
) -> tuple[ImportReport, list[tuple]]:
    """Imports `csv_text` into a warehouse holding a `cart` event at T per e-mail, keyed as
    an earlier version keyed it (e-mail as written), and maybe one synced contact."""
    export = tmp_path / "export.csv"
    export.write_text(csv_text)
    with warehouse(tmp_path / "w.duckdb") as con:
        for email in old_emails:
            _store_as_before(con, md5(f"email:{email}|cart|{T}"), email)
        if synced_contact is not None:
            contact_id, email = synced_contact
            con.execute(
                "insert into raw.intercom_contacts values (?, 1, ?, false, null, 's1', now())",
                [contact_id, json.dumps({"id": contact_id, "email": email})],
            )
        report = import_events(con, export)
        return report, _events(con)


def test_one_event_imported_under_two_spellings_of_an_e_mail_is_stored_once(tmp_path: Path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(f"email,event,timestamp\nLee@X.com,cart,{T}\n")
    second.write_text(f"email,event,timestamp\n  lee@x.COM ,cart,{T}\n")
    with warehouse(tmp_path / "w.duckdb") as con:
        one = import_events(con, first)
        two = import_events(con, second)
        rows = _events(con)
    # The key folds the case; the e-mail column keeps it as the first import wrote it.
    assert rows == [(md5(f"email:lee@x.com|cart|{T}"), "Lee@X.com", "cart", T, "import")]
    assert (one.counts.inserted, two.counts.inserted, two.counts.unchanged) == (1, 0, 1)


def test_events_stored_under_an_e_mail_in_its_written_case_move_to_the_folded_key(
    tmp_path: Path,
):
    # What an earlier version stored from this file: the key kept the e-mail's case.
    report, rows = _import_over_old_keys(
        tmp_path,
        f"email,event,timestamp\nLee@x.com,cart,{T}\nann@x.com,cart,{T}\n",
        ["Lee@x.com", "ann@x.com"],
    )
    assert [r[0] for r in rows] == sorted(
        [md5(f"email:lee@x.com|cart|{T}"), md5(f"email:ann@x.com|cart|{T}")]
    )
    assert report.emails_rekeyed == 1 and report.rekeyed == 0
    assert (report.counts.inserted, report.counts.unchanged) == (1, 1)
    assert "1 stored under an e-mail in other case moved to its lower-case key" in (
        report.summary()
    )


def test_a_second_holding_both_spellings_keeps_two_events_and_no_old_copy(tmp_path: Path):
    # Two rows of one file in one second are two events (the second gets ordinal 1). An
    # earlier version keyed them apart, `lee` and `Lee`, both with ordinal 0.
    export = tmp_path / "export.csv"
    export.write_text(f"email,event,timestamp\nlee@x.com,cart,{T}\nLee@x.com,cart,{T}\n")
    with warehouse(tmp_path / "w.duckdb") as con:
        _store_as_before(con, md5(f"email:lee@x.com|cart|{T}"), "lee@x.com")
        _store_as_before(con, md5(f"email:Lee@x.com|cart|{T}"), "Lee@x.com")
        report = import_events(con, export)
        rows = _events(con)
        again = import_events(con, export)
        assert _events(con) == rows
    assert [r[0] for r in rows] == sorted(
        [md5(f"email:lee@x.com|cart|{T}"), md5(f"email:lee@x.com|cart|{T}|1")]
    )
    assert (report.emails_rekeyed, report.counts.inserted, report.counts.unchanged) == (1, 1, 1)
    assert (again.emails_rekeyed, again.counts.inserted, again.counts.unchanged) == (0, 0, 2)


def test_an_event_kept_under_a_mixed_case_e_mail_moves_to_its_contact_once_synced(
    tmp_path: Path,
):
    # Imported by an earlier version before the contact was synced, under the e-mail as
    # written; the row now names the contact, so the copy moves to the contact's key.
    report, rows = _import_over_old_keys(
        tmp_path,
        f"contact_id,email,event,timestamp\nc-1,Lee@x.com,cart,{T}\n",
        ["Lee@x.com"],
        synced_contact=("c-1", "lee@x.com"),
    )
    assert [r[0] for r in rows] == [md5(f"c-1|cart|{T}")]
    assert (report.rekeyed, report.emails_rekeyed) == (1, 0)


def test_the_summary_adds_up_and_a_repeated_row_is_a_further_event_of_its_second(
    tmp_path: Path,
):
    export = tmp_path / "export.csv"
    export.write_text(
        f"user_id,event,timestamp\nu1,main,{T}\nu1,main,{T}\nu2,,{T}\nu3,main,{T + 1}\n"
    )
    with warehouse(tmp_path / "w.duckdb") as con:
        con.execute(
            "insert into raw.intercom_events values (?, null, null, 'u3', null, 'main', ?, "
            "'{}', 'import', 'old', now())",
            [md5(f"u3|main|{T + 1}"), T + 1],
        )
        report = import_events(con, export)
        ids = [r[0] for r in _events(con)]
    assert sorted(ids) == sorted(
        [md5(f"u1|main|{T}"), md5(f"u1|main|{T}|1"), md5(f"u3|main|{T + 1}")]
    )
    summary = report.summary()
    # 4 rows: 2 inserted (u1 twice), 1 already stored (u3), 1 quarantined (no name).
    assert summary.startswith("4 rows: 2 events inserted, 1 already stored, 1 quarantined;")
    assert "repeated" not in summary


def test_a_row_of_a_contact_not_synced_yet_stored_under_its_user_id_is_not_stored_twice(
    tmp_path: Path,
):
    # Versions that keyed a row naming a contact not synced yet by its user id stored it
    # under `u-9`; today such a row is keyed `c-9`, as the API will key that contact's event.
    export = tmp_path / "export.csv"
    export.write_text(f"contact_id,user_id,event,timestamp\nc-9,u-9,cart,{T}\n")
    with warehouse(tmp_path / "w.duckdb") as con:
        payload = {"event_name": "cart", "created_at": T, "user_id": "u-9"}
        con.execute(
            "insert into raw.intercom_events values (?, null, null, 'u-9', null, 'cart', ?, ?, "
            "'import', 'old', now())",
            [md5(f"u-9|cart|{T}"), T, json.dumps(payload)],
        )
        report = import_events(con, export)
        again = import_events(con, export)
        rows = [r[0] for r in _events(con)]
    assert rows == [md5(f"c-9|cart|{T}")]
    assert (report.rekeyed, report.counts.inserted) == (1, 1)
    assert (again.rekeyed, again.counts.unchanged) == (0, 1)


def test_the_summary_names_every_kind_of_key_left_without_a_synced_contact(tmp_path: Path):
    # One row per key: a user id, a contact id not synced yet, an e-mail; none is synced.
    export = tmp_path / "export.csv"
    export.write_text(
        f"user_id,contact_id,email,event,timestamp\nu-1,,,cart,{T}\n,c-2,,cart,{T}\n"
        f",,lee@x.com,cart,{T}\n"
    )
    with warehouse(tmp_path / "w.duckdb") as con:
        summary = " ".join(import_events(con, export).summary().split())
    assert "3 users matched to no contact (kept under the user id, contact id or e-mail" in (
        summary
    )
