"""Hostile input: broken events files, malformed API requests, invalid settings.

Every expected value here is worked out by hand from the input written in the test: line
numbers count the file's lines, times are days after 2024-01-01T00:00:00Z (1704067200).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from sandbox.cli import app as sandbox_cli
from sandbox.datasets import DatasetError, load_events_file
from sandbox.runner import SandboxHandle, build_dataset_store, running_sandbox, serve_store

DAY = 86_400
JAN_1 = 1_704_067_200  # 2024-01-01T00:00:00Z
HEADER = b"user_id,event,timestamp\n"


def _write(tmp_path: Path, data: bytes, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---- the events file ------------------------------------------------------------------------


def test_each_row_may_use_its_own_time_format(tmp_path: Path):
    path = _write(
        tmp_path,
        HEADER + b"u1,signup,2024-01-01T00:00:00Z\n"
        b"u1,paid,1704153600\n"  # seconds: Jan 2
        b"u2,signup,1704240000000\n"  # milliseconds: Jan 3
        b"u2,paid,2024-01-04T01:00:00+01:00\n"  # an offset: Jan 4, 00:00 UTC
        b"u3,signup,1704412800000000\n"  # microseconds: Jan 5
        b"u3,click,01/05/2024\n",  # ambiguous day and month: set aside
    )
    loaded = load_events_file(path, "paid")
    assert loaded.events["timestamp"].tolist() == [
        JAN_1,
        JAN_1 + DAY,
        JAN_1 + 2 * DAY,
        JAN_1 + 3 * DAY,
        JAN_1 + 4 * DAY,
    ]
    assert [row.line for row in loaded.rejected] == [7]
    assert "'01/05/2024' is neither ISO 8601" in loaded.rejected[0].reason


def test_unreadable_rows_are_set_aside_with_their_line_and_reason(tmp_path: Path):
    path = _write(
        tmp_path,
        HEADER + b"u1,signup,1704067200\n"  # line 2
        b"u1,paid,1704153600\n"  # 3
        b",paid,1704153600\n"  # 4: no user
        b"u2,paid\n"  # 5: a field short
        b"u\x003,paid,1704153600\n"  # 6: NUL byte
        b"J\xfcrgen,paid,1704153600\n"  # 7: Latin-1, not UTF-8
        b"u4,paid,-5\n"  # 8: before 1970
        b"u5,paid,nan\n"  # 9: not a time
        b'"u,6","signup, web",1704153600\n'  # 10: quoted commas are fine
        b"u7,paid,1704153600,extra\n"  # 11: a field too many
        b"\n"  # 12: a blank line is no record
        b"u8,signup,1704153600\n",  # 13
    )
    loaded = load_events_file(path, "paid")
    reasons = {row.line: row.reason for row in loaded.rejected}
    assert reasons == {
        4: "empty user_id",
        5: "expected 3 fields, found 2",
        6: "user_id contains a NUL byte",
        7: "user_id is not UTF-8 text (byte 0xfc)",
        8: "timestamp '-5' lies outside 1970-01-01 to 2099-12-31",
        9: "timestamp 'nan' is neither ISO 8601 text nor Unix seconds, milliseconds, "
        "microseconds or nanoseconds",
        11: "expected 3 fields, found 4",
    }
    assert sorted(zip(loaded.events["user_id"], loaded.events["event"], strict=True)) == [
        ("u,6", "signup, web"),
        ("u1", "paid"),
        ("u1", "signup"),
        ("u8", "signup"),
    ]


def test_a_row_spanning_two_lines_is_named_by_its_first_line(tmp_path: Path):
    path = _write(
        tmp_path,
        HEADER + b"u1,paid,1704067200\n"  # line 2
        b'u2,"sign\nup",1704067200\n'  # lines 3-4: a line break inside the event name
        b"u3,paid,later\n",  # line 5
    )
    loaded = load_events_file(path, "paid")
    assert [(row.line, row.reason) for row in loaded.rejected] == [
        (3, "event contains the control character '\\n'"),
        (
            5,
            "timestamp 'later' is neither ISO 8601 text nor Unix seconds, milliseconds, "
            "microseconds or nanoseconds",
        ),
    ]


def test_a_row_set_aside_is_named_by_the_file_s_columns_and_shown_as_written(tmp_path: Path):
    path = _write(
        tmp_path,
        b"distinct_id,name,time,source\n"
        b"u1,paid,1704067200,web\n"  # line 2
        b"u2,click,01/05/2024,app\n"  # 3: day and month ambiguous
        b",paid,1704067200,web\n",  # 4: no user
    )
    loaded = load_events_file(
        path, "paid", column_map={"distinct_id": "user_id", "name": "event", "time": "timestamp"}
    )
    assert [(row.line, row.reason, row.record) for row in loaded.rejected] == [
        (
            3,
            "time '01/05/2024' is neither ISO 8601 text nor Unix seconds, milliseconds, "
            "microseconds or nanoseconds",
            "'u2,click,01/05/2024,app'",
        ),
        (4, "empty distinct_id", "',paid,1704067200,web'"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf \n\n", "the file is empty"),
        (HEADER, "no readable event rows"),
        (HEADER + b"u1,paid,soon\n", "no readable event rows; 1 set aside, the first: line 2"),
        (b"user_id,event\nu1,paid\n", "missing columns ['timestamp']"),
        (b"user_id,user_id,event,timestamp\nu1,u2,paid,1\n", "2 columns would be 'user_id'"),
        (HEADER + b'u1,paid,1704067200\n"u2,paid,1704067200\nu3,paid,1\n', "line 3: "),
        (HEADER + b"u1,Paid,1704067200\n", "never occurs in the readable rows; did you mean"),
    ],
)
def test_a_file_that_cannot_be_served_is_refused_with_the_reason(
    tmp_path: Path, data: bytes, message: str
):
    with pytest.raises(DatasetError) as error:
        load_events_file(_write(tmp_path, data), "paid")
    assert message in str(error.value)


def test_a_missing_file_a_folder_and_a_clashing_column_map_are_refused(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such file"):
        load_events_file(tmp_path / "absent.csv", "paid")
    with pytest.raises(DatasetError, match="is a folder"):
        load_events_file(tmp_path, "paid")
    clash = _write(tmp_path, b"user_id,name,event,timestamp\nu1,paid,x,1704067200\n")
    with pytest.raises(DatasetError, match=r"2 columns would be 'event' \(\['name', 'event'\]\)"):
        load_events_file(clash, "paid", {"name": "event"})


def test_serve_says_how_many_events_its_window_leaves_out(tmp_path: Path):
    path = _write(
        tmp_path,
        HEADER
        + f"u1,signup,{JAN_1}\n"  # 200 days before the last event: outside 90 days
        f"u1,paid,{JAN_1 + 199 * DAY}\n"
        f"u2,signup,{JAN_1 + 200 * DAY}\n".encode(),
    )
    env = {k: v for k, v in os.environ.items() if k != "NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS"}
    command = [sys.executable, "-m", "orchestration.cli", "sandbox", "serve", "--events"]
    command += [str(path), "--conversion-event", "paid", "--port", "0", "--no-dirt"]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**env, "COLUMNS": "400"}
    )
    try:
        assert server.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("admin:"):
            line = server.stdout.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line.strip())
    finally:
        server.kill()
        server.wait()
    assert (
        "events served: the last 90 days before the clock, 2 of 3"
        " (NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS=0 serves all)"
    ) in lines


def test_duplicates_are_counted_and_served_and_long_ids_kept_as_text(tmp_path: Path):
    long_id = "123456789012345678901234567890"
    row = f"{long_id},paid,1704067200\n".encode()
    loaded = load_events_file(_write(tmp_path, HEADER + row * 3), "paid")
    assert (len(loaded.events), loaded.duplicate_rows) == (3, 2)
    assert set(loaded.events["user_id"]) == {long_id}


def test_a_signup_event_that_never_occurs_is_refused(tmp_path: Path):
    path = _write(tmp_path, HEADER + b"u1,paid,1704067200\n")
    with pytest.raises(DatasetError, match="sign-up event 'signed_up' never occurs"):
        build_dataset_store(
            "events_file",
            events_file=path,
            conversion_event="paid",
            signup="signed_up",
            cache_dir=tmp_path,
        )


def test_running_sandbox_refuses_an_events_file_for_another_dataset_and_a_bad_port(
    tmp_path: Path,
):
    path = _write(tmp_path, HEADER + b"u1,paid,1704067200\n")
    with pytest.raises(ValueError, match="go with events_file, not simple_shop"):
        build_dataset_store(events_file=path, conversion_event="paid", cache_dir=tmp_path)
    store = build_dataset_store(
        "events_file", events_file=path, conversion_event="paid", cache_dir=tmp_path
    )
    with (
        pytest.raises(ValueError, match="port 70000 is not 0 to 65535"),
        serve_store(store, port=70_000),
    ):
        pass


# ---- the command line -----------------------------------------------------------------------


def _plain(output: str) -> str:
    """The text of a message, without the box typer draws around it or its line breaks."""
    return " ".join(output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--events", "{tmp}/absent.csv", "--conversion-event", "paid"], 1, "no such file"),
        (["--events", "{tmp}", "--conversion-event", "paid"], 1, "is a folder"),
        (["--dataset", "mars"], 2, "unknown dataset 'mars'"),
        (["--dataset", "simple_shop", "--events", "x.csv"], 2, "go with --dataset events_file"),
        (["--events", "x.csv", "--conversion-event", "p", "--faults", "x"], 2, "fault profile"),
        (["--events", "x.csv", "--conversion-event", "p", "--time-column", "event"], 2, "same"),
        (["--dataset", "synthetic", "--users", "0"], 2, "--users"),
        (["--port", "65536"], 2, "--port"),
    ],
)
def test_serve_refuses_bad_arguments_before_serving(
    nextbest_home: Path, tmp_path: Path, args: list[str], code: int, text: str
):
    result = CliRunner().invoke(
        sandbox_cli, ["serve", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    )
    assert result.exit_code == code, result.output
    assert text in _plain(result.output)


def test_serve_names_a_core_variable_it_cannot_use(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("NEXTBEST_DATASET", "mars")
    result = CliRunner().invoke(sandbox_cli, ["serve"])
    assert result.exit_code == 2
    assert "Invalid value for NEXTBEST_DATASET" in _plain(result.output)


def test_serve_refuses_a_port_out_of_range_when_reading_the_settings(
    nextbest_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("NEXTBEST_SANDBOX_PORT", "70000")
    result = CliRunner().invoke(sandbox_cli, ["serve"])
    assert result.exit_code == 1
    assert "NEXTBEST_SANDBOX_PORT='70000': Input should be less than or equal to 65535" in (
        _plain(result.output)
    )


def test_serve_names_the_invalid_variable(nextbest_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEXTBEST_SANDBOX_RATE_LIMIT", "0")
    monkeypatch.setenv("NEXTBEST_SANDBOX_FAULTS", "lightning")
    result = CliRunner().invoke(sandbox_cli, ["serve"])
    output = _plain(result.output)
    assert result.exit_code == 1
    assert "NEXTBEST_SANDBOX_RATE_LIMIT='0'" in output
    assert "NEXTBEST_SANDBOX_FAULTS='lightning'" in output


def test_serve_reports_set_aside_rows_once_and_counts_one_row_in_the_singular(
    nextbest_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    import sandbox.cli

    # Line 3 has a time that cannot be read; line 5 repeats line 4 to the second.
    path = _write(
        tmp_path,
        HEADER
        + b"u1,signup,1704067200\n"
        + b"u1,paid,soon\n"
        + b"u2,signup,1704153600\n"
        + b"u2,signup,1704153600\n"
        + b"u2,paid,1704240000\n",
    )

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    # The command serves until Ctrl-C; its first wait stands in for it. Only the command's
    # own view of `time` changes, so the server it starts waits as usual.
    clock = SimpleNamespace(perf_counter=time.perf_counter, sleep=interrupted)
    monkeypatch.setattr(sandbox.cli, "time", clock)
    result = CliRunner().invoke(
        sandbox_cli, ["serve", "--events", str(path), "--conversion-event", "paid", "--port", "0"]
    )
    output = _plain(result.output)
    assert result.exit_code == 0, result.output
    assert output.count("line 3") == 1, output
    # With no logging set up, Python prints a WARNING record to stderr next to the report.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "set aside 1 row that could not be read" in output
    assert "1 row repeats another row's user, event and second" in output
    assert "2 contacts" in output
    assert "1 rows" not in output


# ---- the HTTP API ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    folder = tmp_path_factory.mktemp("small")
    path = _write(
        folder,
        HEADER + b"u1,signup,1704067200\nu1,paid,1704067300\nu2,signup,1704067200\nu3,paid,never\n",
    )
    with running_sandbox(
        "events_file",
        events_file=path,
        conversion_event="paid",
        dirt=False,
        event_window_days=0,
        cache_dir=folder,
    ) as sb:
        headers = {"Authorization": f"Bearer {sb.intercom_token}"}
        httpx.post(
            f"{sb.intercom_url}/data_attributes",
            json={"name": "seats", "model": "contact", "data_type": "integer"},
            headers=headers,
        ).raise_for_status()
        yield sb


def test_rows_set_aside_are_listed_by_the_admin_api(small: SandboxHandle):
    assert small.admin.facts()["rejected_rows"] == 1
    rejected = small.admin.client.get("/rejected").json()
    assert [(r["line"], r["record"]) for r in rejected] == [(5, "'u3,paid,never'")]


SEARCH = "/contacts/search"
EMAIL_HAS_U = {"field": "email", "operator": "~", "value": "u"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", SEARCH, b"{not json", 400, "parameter_invalid"),
        (
            "POST",
            SEARCH,
            b'{"query": {"field": "updated_at", "operator": ">", "value": NaN}}',
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            b'{"query":' + b'{"operator":"AND","value":[' * 40 + b"1" + b"]}" * 40 + b"}",
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"field": "email", "operator": "LIKE", "value": "u"}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"field": "updated_at", "operator": ">", "value": 10**400}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"field": "updated_at", "operator": ">", "value": [1, 2]}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"field": "updated_at", "operator": "IN", "value": 5}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"field": "email", "operator": "=", "value": {"a": 1}}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {
                "query": {
                    "operator": "AND",
                    "value": [
                        {"operator": "OR", "value": [{"operator": "AND", "value": [EMAIL_HAS_U]}]}
                    ],
                }
            },
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": {"operator": "AND", "value": [EMAIL_HAS_U] * 16}},
            400,
            "parameter_invalid",
        ),
        ("POST", SEARCH, {"query": EMAIL_HAS_U, "pagination": [1]}, 400, "parameter_invalid"),
        (
            "POST",
            SEARCH,
            {"query": EMAIL_HAS_U, "pagination": {"per_page": 1.5}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": EMAIL_HAS_U, "pagination": {"per_page": True}},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            SEARCH,
            {"query": EMAIL_HAS_U, "pagination": {"starting_after": 5}},
            400,
            "parameter_invalid",
        ),
        ("GET", "/contacts?per_page=0", None, 400, "parameter_invalid"),
        ("GET", "/contacts?per_page=151", None, 400, "parameter_invalid"),
        ("GET", "/contacts?per_page=abc", None, 400, "parameter_invalid"),
        ("GET", "/contacts?starting_after=LTE6LTk5", None, 400, "parameter_invalid"),  # -1:-99
        ("GET", "/contacts?starting_after=!!", None, 400, "parameter_invalid"),
        (
            "PUT",
            "/contacts/{first}",
            {"custom_attributes": {"seats": 10**19}},
            400,
            "parameter_invalid",
        ),
        (
            "PUT",
            "/contacts/{first}",
            b'{"custom_attributes": {"seats": NaN}}',
            400,
            "parameter_invalid",
        ),
        (
            "PUT",
            "/contacts/{first}",
            {"custom_attributes": {"seats": [1]}},
            400,
            "parameter_invalid",
        ),
        ("PUT", "/contacts/{first}", {"custom_attributes": {"a.b": 1}}, 400, "parameter_invalid"),
        ("PUT", "/contacts/{first}", {"email": 5}, 400, "parameter_invalid"),
        ("PUT", "/contacts/{first}", {"name": "x" * 256}, 400, "parameter_invalid"),
        (
            "POST",
            "/data_attributes",
            {"name": "a$b", "model": "contact", "data_type": "string"},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            "/events",
            {"event_name": "x", "created_at": 10**30, "id": "{first}"},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            "/events",
            {"event_name": "x", "created_at": 5, "id": "{first}", "metadata": 5},
            400,
            "parameter_invalid",
        ),
        (
            "POST",
            "/events",
            {"event_name": "x", "created_at": 5, "email": ["a"]},
            400,
            "parameter_invalid",
        ),
        ("DELETE", "/contacts", None, 405, "method_not_allowed"),
        ("GET", "/no_such_thing", None, 404, "not_found"),
    ],
)
def test_malformed_intercom_requests_get_an_error_list(
    small: SandboxHandle, method: str, path: str, body: object, status: int, code: str
):
    first = small.store.contacts.ids[0]
    if isinstance(body, dict):
        body = json.dumps(body).replace("{first}", first).encode()
    response = httpx.request(
        method,
        small.intercom_url + path.replace("{first}", first),
        content=body,
        headers={"Authorization": f"Bearer {small.intercom_token}"},
    )
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["type"] == "error.list"
    assert [e["code"] for e in answer["errors"]] == [code]


def test_a_rejected_write_leaves_the_contact_readable(small: SandboxHandle):
    client = httpx.Client(
        base_url=small.intercom_url,
        headers={"Authorization": f"Bearer {small.intercom_token}"},
    )
    first = small.store.contacts.ids[0]
    assert client.put(f"/contacts/{first}", json={"email": 5}).status_code == 400
    listed = client.get("/contacts")
    assert listed.status_code == 200
    assert listed.json()["data"][0]["email"] == small.store.contacts.emails[0]


@pytest.mark.parametrize(
    ("query", "status", "code", "param"),
    [
        ("limit=0", 400, "parameter_invalid_integer", "limit"),
        ("limit=101", 400, "parameter_invalid_integer", "limit"),
        ("limit=abc", 400, "parameter_invalid_integer", "limit"),
        ("created[gte]=abc", 400, "parameter_invalid_integer", "created[gte]"),
        ("created=abc", 400, "parameter_invalid_integer", "created"),
        ("created[gte]=99999999999999999999", 400, "parameter_invalid_integer", "created[gte]"),
        ("created[after]=1", 400, "parameter_unknown", "created[after]"),
        ("starting_after=cus_unknown", 400, "resource_missing", "starting_after"),
    ],
)
def test_malformed_stripe_requests_get_stripe_errors(
    small: SandboxHandle, query: str, status: int, code: str, param: str
):
    response = httpx.get(
        f"{small.stripe_url}/v1/customers?{query}",
        headers={"Authorization": f"Bearer {small.stripe_key}"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_an_unknown_stripe_url_is_a_stripe_404(small: SandboxHandle):
    response = httpx.get(
        f"{small.stripe_url}/v1/widgets", headers={"Authorization": f"Bearer {small.stripe_key}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Unrecognized request URL (GET: /v1/widgets)."


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/clock", {"advance_seconds": 10**30}, "advance_seconds must be a whole number"),
        ("/clock", {"advance_seconds": -60}, "advance_seconds must be a whole number"),
        ("/faults", {"profile": None, "overrides": {"error_share": "abc"}}, "error_share='abc'"),
        ("/faults", {"profile": None, "overrides": [1]}, "overrides must be an object"),
        ("/merge", {}, "lead_id and user_id required"),
    ],
)
def test_bad_admin_requests_are_refused_and_change_nothing(
    small: SandboxHandle, path: str, body: dict, message: str
):
    clock = small.store.now()
    response = small.admin.client.post(path, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert small.state.faults.error_share == 0.0
    assert small.store.now() - clock < 60
