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
