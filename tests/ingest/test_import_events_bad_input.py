"""`nextbest import-events`: bad rows set aside with line and reason; unreadable files refused."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.ingest.import_events import read_time
from orchestration.settings import get_settings
from orchestration.warehouse import connect

HEADER = "user_id,event_name,created_at\n"
JAN_1_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
WIDE = {"COLUMNS": "400"}  # rich wraps at the terminal width, inside a path too


def _run(path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["import-events", str(path)])
    # rich wraps long lines; a traceback would show up as an exception, not output.
    return result.exit_code, " ".join(result.output.split()), result.exception


def _stored() -> tuple[list[tuple], list[tuple]]:
    with connect(get_settings().warehouse, read_only=True) as con:
        events = sorted(
            con.execute(
                "select external_id, event_name, created_at from raw.intercom_events"
            ).fetchall()
        )
        kept = sorted(
            con.execute("select record_key, reason, payload from raw.quarantine").fetchall()
        )
    return events, kept


def _import_into_empty(path, rows: int, inserted: int, quarantined: int):
    """Imports `path` into an empty warehouse, checks the summary's counts, returns
    what was stored and what was set aside."""
    code, output, error = _run(path)
    assert code == 0 and error is None, output
    counts = (
        f"{rows} rows: {inserted} events inserted, 0 already stored, {quarantined} quarantined;"
    )
    assert counts in output, output
    return _stored()


def test_bad_csv_rows_are_set_aside_with_their_line_and_reason(nextbest_home, tmp_path):
    csv = tmp_path / "old.csv"
    csv.write_text(
        HEADER
        + f"good,a,{JAN_1_2024}\n"  # line 2: stored
        + "u1,x,nan\n"  # 3
        + "u1,x,inf\n"  # 4
        + "u1,x,1e20\n"  # 5
        + "u1,x,-5\n"  # 6
        + "u1,x,01/05/2024\n"  # 7
        + f"u\x001,x,{JAN_1_2024}\n"  # 8
        + "u2,y\n"  # 9
        + f"ms,b,{JAN_1_2024 * 1000 + 999}\n"  # 10: milliseconds, floored to the second
        + f"ns,c,{JAN_1_2024 * 10**9}\n"  # 11: nanoseconds
        + "iso,d,2024-01-01T01:00:00+01:00\n"  # 12: ISO 8601 with a zone
    )
    events, kept = _import_into_empty(csv, rows=11, inserted=4, quarantined=7)
    assert events == [
        ("good", "a", JAN_1_2024),
        ("iso", "d", JAN_1_2024),
        ("ms", "b", JAN_1_2024),
        ("ns", "c", JAN_1_2024),
    ]
    reasons = {key: reason for key, reason, _ in kept}
    assert set(reasons) == {f"old.csv:{n}" for n in range(3, 10)}
    assert reasons["old.csv:3"] == "time 'nan' is not a finite number"
    assert reasons["old.csv:4"] == "time 'inf' is not a finite number"
    assert reasons["old.csv:5"].startswith("implausible time '1e20'")
    assert reasons["old.csv:6"].startswith("implausible time '-5'")
    assert reasons["old.csv:7"].startswith("ambiguous time '01/05/2024'")
    assert reasons["old.csv:8"] == "user_id holds a NUL byte"
    assert reasons["old.csv:9"] == "expected 3 fields, found 2"
    # What was set aside is kept whole, NUL byte and all.
    payloads = {key: json.loads(payload) for key, _, payload in kept}
    assert payloads["old.csv:8"]["user_id"] == "u\x001"
    assert payloads["old.csv:9"] == {"fields": ["u2", "y"]}


def test_bad_json_lines_are_set_aside_with_their_line_number(nextbest_home, tmp_path):
    lines = tmp_path / "old.jsonl"
    lines.write_text(
        json.dumps({"user_id": "u1", "event_name": "x", "created_at": JAN_1_2024})
        + "\n{not json\n"
        + json.dumps({"user_id": {"a": 1}, "event_name": ["x"], "created_at": JAN_1_2024})
        + "\n[1, 2]\n"
        + json.dumps({"user_id": "u3", "event_name": "y", "created_at": True})
        + "\n"
    )
    events, kept = _import_into_empty(lines, rows=5, inserted=1, quarantined=4)
    assert events == [("u1", "x", JAN_1_2024)]
    reasons = {key: reason for key, reason, _ in kept}
    assert reasons["old.jsonl:2"].startswith("not valid JSON")
    assert reasons["old.jsonl:3"] == "user_id is an object, expected text or a number"
    assert reasons["old.jsonl:4"] == "expected a JSON object, found list"
    assert reasons["old.jsonl:5"] == "created_at is true/false, expected text or a number"
    assert json.loads(dict((k, p) for k, _, p in kept)["old.jsonl:2"]) == {"line": "{not json"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory"),
        (b"", "the file is empty"),
        (b"\n  \n", "the file is empty"),
        (HEADER.encode() + b"J\xfcrgen,paid,1704067200\n", "line 2 is not UTF-8"),
        (b"user_id,user_id,event_name,created_at\nu1,u2,x,1704067200\n", "repeated"),
    ],
)
def test_a_file_that_cannot_be_read_fails_with_one_line(nextbest_home, tmp_path, content, message):
    path = tmp_path / "export.csv"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code, output, error = _run(path)
    assert code == 1
    assert error is None or isinstance(error, SystemExit), error
    assert message in output
    assert "Traceback" not in output


def test_a_broken_quote_sets_the_rest_of_the_file_aside(nextbest_home, tmp_path):
    csv = tmp_path / "quote.csv"
    csv.write_text(HEADER + f"u1,a,{JAN_1_2024}\n" + f'"u2,b,{JAN_1_2024}\nu3,c,{JAN_1_2024}\n')
    code, output, _ = _run(csv)
    assert code == 0, output
    assert "1 events inserted" in output and "1 quarantined" in output
    _, kept = _stored()
    assert [(key, reason.split(":")[0]) for key, reason, _ in kept] == [
        ("quote.csv:3", "unreadable CSV from here on")
    ]
    assert f"u3,c,{JAN_1_2024}" in json.loads(kept[0][2])["text"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("946684800", 946_684_800),  # 2000-01-01, the first accepted second
        ("4102444799", 4_102_444_799),  # the last second before 2100
        ("4102444800", None),  # 2100-01-01 itself is refused as seconds...
        ("1704067200.9", JAN_1_2024),  # fractions floor to the second
        ("1.7040672e9", JAN_1_2024),
        ("2024-01-01", JAN_1_2024),  # a bare date is midnight UTC
        ("2024-01-01 00:00:00.75", JAN_1_2024),
        ("1999-12-31T23:59:59Z", None),
        ("Jan 1 2024", None),
        ("", None),
    ],
)
def test_read_time_accepts_unix_numbers_and_iso_8601_in_range(text, seconds):
    assert read_time(text)[0] == seconds


@pytest.mark.parametrize("text", ["1e999999999", "1e999999", "-1e999999", "1e19", "1e7"])
def test_read_time_refuses_huge_exponents_at_once(text):
    # 1e999999999 overflowed the decimal context; 1e999999 took minutes of CPU to refuse.
    started = time.monotonic()
    seconds, reason = read_time(text)
    assert seconds is None and reason.startswith(f"implausible time {text!r}")
    assert time.monotonic() - started < 1


def test_a_huge_exponent_is_quarantined_not_a_crash(nextbest_home, tmp_path):
    csv = tmp_path / "exp.csv"
    csv.write_text(HEADER + "u1,a,1e999999999\n" + f"u2,b,{JAN_1_2024}\n")
    events, kept = _import_into_empty(csv, rows=2, inserted=1, quarantined=1)
    assert events == [("u2", "b", JAN_1_2024)]
    assert [(key, reason.split(":")[0]) for key, reason, _ in kept] == [
        ("exp.csv:2", "implausible time '1e999999999'")
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_json_lines_are_cut_at_newlines_only(nextbest_home, tmp_path, end):
    # JSON strings may hold U+2028 and U+0085 unescaped; they do not end a JSON line.
    lines = tmp_path / "sep.jsonl"
    rows = [
        {"user_id": "u1", "event_name": "page\u2028view", "created_at": JAN_1_2024},
        {"user_id": "u2", "event_name": "a\x85b", "created_at": JAN_1_2024},
        {"user_id": "u3", "event_name": "c", "created_at": "nan"},
    ]
    lines.write_bytes("".join(json.dumps(r, ensure_ascii=False) + end for r in rows).encode())
    events, kept = _import_into_empty(lines, rows=3, inserted=2, quarantined=1)
    assert events == [("u1", "page\u2028view", JAN_1_2024), ("u2", "a\x85b", JAN_1_2024)]
    assert [key for key, _, _ in kept] == ["sep.jsonl:3"]


def test_json_too_large_for_python_is_quarantined(nextbest_home, tmp_path):
    lines = tmp_path / "big.jsonl"
    good = json.dumps({"user_id": "u3", "event_name": "c", "created_at": JAN_1_2024})
    lines.write_text(
        '{"user_id": "u1", "event_name": "a", "created_at": 1'
        + "0" * 5000
        + "}\n"
        + "[" * 100_000
        + "]" * 100_000
        + "\n"
        + good
        + "\n"
    )
    events, kept = _import_into_empty(lines, rows=3, inserted=1, quarantined=2)
    assert events == [("u3", "c", JAN_1_2024)]
    reasons = {key: reason for key, reason, _ in kept}
    assert set(reasons) == {"big.jsonl:1", "big.jsonl:2"}
    assert all(reason.startswith("JSON too large to read") for reason in reasons.values())


def test_a_csv_field_longer_than_the_csv_module_default_is_read(nextbest_home, tmp_path):
    # 131,072 characters was the csv module's limit: the row and every row after it were
    # set aside as "unreadable CSV from here on".
    csv = tmp_path / "long.csv"
    long_name = "x" * 200_000
    csv.write_text(HEADER + f"u1,{long_name},{JAN_1_2024}\n" + f"u2,b,{JAN_1_2024}\n")
    events, _ = _import_into_empty(csv, rows=2, inserted=2, quarantined=0)
    assert events == [("u1", long_name, JAN_1_2024), ("u2", "b", JAN_1_2024)]


def test_a_broken_quote_keeps_the_rest_from_its_own_line(nextbest_home, tmp_path):
    # U+2028 inside a quoted cell is no line break for CSV: the rest starts at line 3.
    csv = tmp_path / "quote.csv"
    csv.write_text(
        HEADER + f'u1,"a\u2028b",{JAN_1_2024}\n' + f'"u2,b,{JAN_1_2024}\nu3,c,{JAN_1_2024}\n'
    )
    code, output, _ = _run(csv)
    assert code == 0, output
    _, kept = _stored()
    assert [key for key, _, _ in kept] == ["quote.csv:3"]
    assert json.loads(kept[0][2])["text"] == f'"u2,b,{JAN_1_2024}\nu3,c,{JAN_1_2024}\n'


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        # The file has its own external_id: that one was read, distinct_id ignored.
        (["distinct_id=external_id"], "columns ['distinct_id', 'external_id'] would all be"),
        (["distinct_id=created_at"], "columns ['distinct_id', 'created_at'] would all be"),
    ],
)
def test_a_column_mapped_onto_one_the_file_has_is_refused(
    nextbest_home, tmp_path, columns, message
):
    csv = tmp_path / "map.csv"
    csv.write_text(f"distinct_id,external_id,event_name,created_at\nd1,x1,a,{JAN_1_2024}\n")
    options = [part for spec in columns for part in ("--column", spec)]
    result = CliRunner().invoke(app, ["import-events", str(csv), *options])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # ISO 8601 in form, but no such day, month or hour: not a day-month mix-up.
        ("2024-02-30", "unreadable time '2024-02-30': day is out of range for month"),
        ("2024-13-01", "unreadable time '2024-13-01': month must be in 1..12"),
        ("2024-01-01T25:00:00", "unreadable time '2024-01-01T25:00:00': hour must be in 0..23"),
        ("05/01/2024", "ambiguous time '05/01/2024'"),
        ("2024-1-5", "ambiguous time '2024-1-5'"),
    ],
)
def test_read_time_tells_an_impossible_date_from_an_ambiguous_one(text, reason):
    seconds, got = read_time(text)
    assert seconds is None
    assert got.startswith(reason)


@pytest.mark.parametrize("kind", ["csv", "directory"])
def test_a_warehouse_path_that_is_not_a_database_is_refused(
    nextbest_home, tmp_path, monkeypatch, kind
):
    # DuckDB opens a CSV file as a table of an in-memory database: the import reported
    # "raw.intercom_events now holds 1 events" and every write was lost on close.
    target = tmp_path / "events.csv"
    if kind == "csv":
        target.write_text(HEADER + f"u0,z,{JAN_1_2024}\n")
    else:
        target.mkdir()
    before = target.read_bytes() if kind == "csv" else None
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", str(target))
    export = tmp_path / "e.csv"
    export.write_text(HEADER + f"u1,a,{JAN_1_2024}\n")
    nextbest = Path(sys.executable).parent / "nextbest"
    for args in (["import-events", str(export)], ["user", "u1"]):
        done = subprocess.run(
            [str(nextbest), *args], capture_output=True, text=True, env=os.environ | WIDE
        )
        output = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 1, output
        assert "Traceback" not in output
        assert f"warehouse {target} is " in output and "not a DuckDB database file" in output
    if before is not None:
        assert target.read_bytes() == before


def test_a_column_mapping_that_names_no_column_of_the_file_is_refused(nextbest_home, tmp_path):
    # A typo in --column must not leave the import to the default names: here `event` would
    # have been read as the event name instead of the `action` column the user chose.
    csv = tmp_path / "typo.csv"
    csv.write_text(f"user_id,event,action,created_at\nu1,page_view,signup,{JAN_1_2024}\n")
    result = CliRunner().invoke(
        app, ["import-events", str(csv), "--column", "acton=event_name"], env=WIDE
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert "--column acton=event_name: the file has no column 'acton'" in output
    assert "Traceback" not in output
    assert not get_settings().warehouse.exists() or _stored() == ([], [])


def test_a_json_line_repeating_a_key_is_set_aside_as_a_csv_header_would_be_refused(
    nextbest_home, tmp_path
):
    # json.loads keeps the last of two equal keys without a word: the event would be
    # imported as `paid` although the line also says `signup`.
    lines = tmp_path / "dup.jsonl"
    repeated = (
        f'{{"user_id": "u1", "event_name": "signup", "event_name": "paid", '
        f'"created_at": {JAN_1_2024}}}'
    )
    nested = (
        f'{{"user_id": "u2", "event_name": "x", "created_at": {JAN_1_2024}, '
        '"metadata": {"a": 1, "a": 2}}'
    )
    lines.write_text(repeated + "\n" + nested + "\n")
    events, kept = _import_into_empty(lines, rows=2, inserted=1, quarantined=1)
    assert events == [("u2", "x", JAN_1_2024)]
    assert [(key, reason) for key, reason, _ in kept] == [
        ("dup.jsonl:1", "key 'event_name' appears more than once; which value holds is unknown")
    ]
    assert json.loads(kept[0][2]) == {"line": repeated}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # RFC 1952: a gzip member starts with 1F 8B.
        (gzip.compress((HEADER + f"u1,a,{JAN_1_2024}\n").encode()), "is gzip-compressed"),
        # A ZIP local file header starts with PK 03 04; an .xlsx workbook is a ZIP archive.
        (b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 20, "is a ZIP archive"),
        # Spreadsheet programs save "Unicode text" as UTF-16 with a byte-order mark.
        (b"\xff\xfe" + (HEADER + f"u1,a,{JAN_1_2024}\n").encode("utf-16-le"), "is UTF-16 text"),
        (b"\xfe\xff" + (HEADER + f"u1,a,{JAN_1_2024}\n").encode("utf-16-be"), "is UTF-16 text"),
    ],
)
def test_a_compressed_or_utf_16_file_is_named_as_such(nextbest_home, tmp_path, content, message):
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    code, output, error = _run(path)
    assert code == 1, output
    assert error is None or isinstance(error, SystemExit), error
    assert f"{path}: {message}" in output
    assert "Traceback" not in output


def test_a_header_that_looks_like_markup_is_named_as_given(nextbest_home, tmp_path):
    # The missing-column message quotes the header; rich read "[/x]" as a closing tag.
    path = tmp_path / "markup.csv"
    path.write_text(f"[/x],event_name,created_at\nu1,a,{JAN_1_2024}\n")
    code, output, error = _run(path)
    assert code == 1, output
    assert error is None or isinstance(error, SystemExit), error
    assert "(found ['[/x]', 'event_name', 'created_at'])" in output


def test_csv_lines_of_white_space_are_skipped_like_empty_lines(nextbest_home, tmp_path):
    # A line holding only spaces or a tab is as blank as an empty one: neither is a row, so
    # neither is counted or set aside, and the lines after keep their numbers.
    csv = tmp_path / "blank.csv"
    csv.write_text(
        "  \n"  # line 1: before the header
        + HEADER  # 2
        + f"good,a,{JAN_1_2024}\n"  # 3
        + "   \n"  # 4
        + "\t\n"  # 5
        + "\n"  # 6
        + f"u2,b,{JAN_1_2024}\n"  # 7
        + "u3,c\n"  # 8
    )
    events, kept = _import_into_empty(csv, rows=3, inserted=2, quarantined=1)
    assert events == [("good", "a", JAN_1_2024), ("u2", "b", JAN_1_2024)]
    assert [(key, reason) for key, reason, _ in kept] == [
        ("blank.csv:8", "expected 3 fields, found 2")
    ]
