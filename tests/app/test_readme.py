"""The README tells the truth about the settings and the set-up commands."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_every_setting_is_documented_in_the_readme_and_the_env_example() -> None:
    from orchestration.settings import settings_table

    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    variables = [variable for variable, _, _ in settings_table()]
    assert len(variables) == len(set(variables)), "a variable belongs to one setting"
    assert [v for v in variables if f"`{v}`" not in readme] == []
    assert [v for v in variables if not re.search(rf"^# {v}=", example, re.M)] == []


def test_the_two_set_up_commands_come_first_and_exist_in_the_makefile() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_settings_table_and_env_example_are_exactly_what_the_command_prints() -> None:
    # Each setting's meaning is written once, in its class; the README table and .env.example
    # are copies printed by `nextbest settings`, so an edit to one meaning must reach both.
    from typer.testing import CliRunner

    from orchestration.cli import app

    runner = CliRunner()
    table = runner.invoke(app, ["settings", "--markdown"])
    example = runner.invoke(app, ["settings", "--env-example"])
    assert table.exit_code == 0 and example.exit_code == 0
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    readme_rows = [line for line in section.splitlines() if line.startswith("|")]
    assert readme_rows == [line.rstrip() for line in table.output.splitlines() if line]
    assert (ROOT / ".env.example").read_text() == example.output


def test_asking_for_both_printouts_at_once_is_refused() -> None:
    from typer.testing import CliRunner

    from orchestration.cli import app

    both = CliRunner().invoke(app, ["settings", "--markdown", "--env-example"])
    # 2 is click's exit code for a usage error
    assert both.exit_code == 2
    assert "choose one of --markdown and --env-example" in both.output


def test_every_variable_the_docs_name_is_one_that_is_read() -> None:
    from orchestration.settings import settings_table

    settings = {variable for variable, _, _ in settings_table()}
    bench = "\n".join(p.read_text() for p in (ROOT / "bench").rglob("*.py"))
    pattern = re.compile(r"\b(?:NEXTBEST|DAGSTER|MLFLOW|INTERCOM|STRIPE)_[A-Z0-9_]*[A-Z0-9]\b")
    unknown = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in sorted(set(pattern.findall(doc.read_text()))):
            # Benchmarks read a few variables of their own, outside the settings classes.
            if name not in settings and f'"{name}"' not in bench:
                unknown.append(f"{doc.name}: {name}")
    assert unknown == []
