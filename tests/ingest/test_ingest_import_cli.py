"""`nextbest import-events`: CSV and JSON lines, bad rows quarantined, re-imports change nothing."""

from __future__ import annotations

import hashlib
import json
import re

from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.ingest.load import event_key
from orchestration.settings import get_settings
from orchestration.warehouse import connect


def _events(con) -> list[tuple]:
    return sorted(
        con.execute(
            "select id, contact_id, external_id, event_name, created_at, source "
            "from raw.intercom_events"
        ).fetchall()
    )


def test_import_events_loads_csv_and_json_lines_and_quarantines_bad_rows(nextbest_home, tmp_path):
    csv = tmp_path / "old.csv"
    csv.write_text(
        "user_id,event,timestamp\n"
        "u1,main,2020-01-01 10:00:00.75\n"
        "u1,main,2020-01-01 10:00:00.25\n"  # same second: a second copy, not a duplicate
        "u2,cart,1577872800\n"
        "u3,,2020-01-01 10:00:00\n"  # no event name
        "u4,cart,not a time\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["import-events", str(csv)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "3 events inserted" in output
    assert "2 quarantined" in output
    with connect(get_settings().warehouse, read_only=True) as con:
        rows = _events(con)
        reasons = sorted(r[0] for r in con.execute("select reason from raw.quarantine").fetchall())
    t = 1_577_872_800  # 2020-01-01 10:00:00 UTC
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    assert rows == sorted(
        [
            (md5(f"u1|main|{t}"), None, "u1", "main", t, "import"),
            (md5(f"u1|main|{t}|1"), None, "u1", "main", t, "import"),
            (md5(f"u2|cart|{t}"), None, "u2", "cart", t, "import"),
        ]
    )
    assert reasons == ["empty event name", "unreadable time 'not a time'"]

    # The same events as JSON lines, with a mapped column: nothing new lands.
    lines = tmp_path / "old.jsonl"
    lines.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"uid": "u1", "event_name": "main", "created_at": t},
                {"uid": "u2", "event_name": "cart", "created_at": t * 1000},
            )
        )
    )
    result = runner.invoke(app, ["import-events", str(lines), "--column", "uid=external_id"])
    assert result.exit_code == 0, result.output
    assert "0 events inserted, 2 already stored" in " ".join(result.output.split())
    with connect(get_settings().warehouse, read_only=True) as con:
        assert _events(con) == rows


def test_import_events_names_the_missing_columns(nextbest_home, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\nu1,main\n")
    result = CliRunner().invoke(app, ["import-events", str(bad)])
    assert result.exit_code == 1
    assert "needs an event name and a time column" in " ".join(result.output.split())


def test_a_file_without_a_known_user_column_is_told_how_to_map_its_own(nextbest_home, tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("distinct_id,name,time\nu1,main,2020-01-01T10:00:00Z\n")
    result = CliRunner().invoke(app, ["import-events", str(export)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "(found ['distinct_id', 'name', 'time'])" in said
    assert "--column FILE_COLUMN=external_id" in said
    # Doing what it says imports the row.
    mapped = CliRunner().invoke(
        app, ["import-events", str(export), "--column", "distinct_id=external_id"]
    )
    assert mapped.exit_code == 0, mapped.output
    said = " ".join(mapped.output.split())
    assert "1 rows: 1 events inserted, 0 already stored, 0 quarantined;" in said


def test_the_documented_column_names_are_the_accepted_ones(nextbest_home, tmp_path):
    from orchestration.ingest.import_events import COLUMN_NAMES
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "ingestion.md").read_text()
    sentence = " ".join(doc.split("Accepted columns:", 1)[1].split("Rows are keyed", 1)[0].split())
    assert re.findall(r"`(\w+)`", sentence) == [n for names in COLUMN_NAMES.values() for n in names]

    # The other spellings it lists need no --column: intercom_user_id, name and time. The
    # contact is not synced yet (the warehouse is empty): the row is kept, keyed as the API
    # will key that contact's event (2020-01-01T10:00:00Z is 1,577,836,800 + 10 h).
    export = tmp_path / "export.csv"
    export.write_text("intercom_user_id,name,time\nc-9,main,2020-01-01T10:00:00Z\n")
    result = CliRunner().invoke(app, ["import-events", str(export)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "1 rows: 1 events inserted, 0 already stored, 0 quarantined;" in said
    with connect(get_settings().warehouse, read_only=True) as con:
        assert _events(con) == [
            (event_key("c-9", "main", 1_577_872_800), None, None, "main", 1_577_872_800, "import")
        ]


def test_events_imported_before_their_contact_was_synced_move_to_it_on_a_re_import(
    nextbest_home, tmp_path
):
    t = 1_577_872_800  # 2020-01-01 10:00:00 UTC
    export = tmp_path / "export.csv"
    export.write_text(f"user_id,email,event,timestamp\nu1,,main,{t}\n,a@x.test,cart,{t}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["import-events", str(export)]).exit_code == 0
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    with connect(get_settings().warehouse) as con:
        # No contact yet: kept under the user id and under the e-mail.
        assert [r[0] for r in _events(con)] == sorted(
            [md5(f"u1|main|{t}"), md5(f"email:a@x.test|cart|{t}")]
        )
        # A sync then stores the contacts: c-1 has external id u1, c-2 the only a@x.test.
        for contact_id, payload in (
            ("c-1", {"id": "c-1", "external_id": "u1"}),
            ("c-2", {"id": "c-2", "email": "a@x.test"}),
        ):
            con.execute(
                "insert into raw.intercom_contacts values (?, 1, ?, false, null, 's1', now())",
                [contact_id, json.dumps(payload)],
            )
    result = runner.invoke(app, ["import-events", str(export)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    with connect(get_settings().warehouse, read_only=True) as con:
        rows = _events(con)
    # u1's event moves to c-1. An e-mail alone never picks a contact, so a@x.test's stays.
    assert rows == sorted(
        [
            (md5(f"c-1|main|{t}"), "c-1", "u1", "main", t, "import"),
            (md5(f"email:a@x.test|cart|{t}"), None, None, "cart", t, "import"),
        ]
    )
    assert "2 rows: 1 events inserted, 1 already stored, 0 quarantined;" in output
    assert "1 copies imported before their contact was synced moved to it" in output
