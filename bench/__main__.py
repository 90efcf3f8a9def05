"""`python -m bench [NAME ...]`: run benchmarks, print a table, write bench/results/latest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.harness import discover, run

OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def main(
    names: Annotated[
        list[str] | None, typer.Argument(help="Benchmarks to run; all when none is named.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the JSON figures.")] = OUT,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the benchmarks and exit.")
    ] = False,
) -> None:
    """Run the named benchmarks and print each figure beside its peer."""
    console = Console(width=160)
    if list_only:
        for name, bench in sorted(discover().items()):
            console.print(f"{name}: {bench.description}")
        return
    try:
        records = run(names or [], out)
    except KeyError as error:
        console.print(f"[red]{error.args[0]}[/red]")
        raise typer.Exit(2) from error
    table = Table(title=f"benchmarks ({records[0]['machine_cores'] if records else '?'} cores)")
    for column in ("benchmark", "figure", "value", "peer", "peer value", "ratio", "x better"):
        table.add_column(column)

    def fmt(value: object) -> str:
        return "" if value is None else f"{value:,.3g}" if isinstance(value, float) else str(value)

    for rec in records:
        table.add_row(
            str(rec["benchmark"]),
            f"{rec['figure']} ({rec['unit']})",
            fmt(rec["value"]),
            str(rec["peer"]),
            fmt(rec["peer_value"]),
            fmt(rec["ratio"]),
            fmt(rec["advantage"]),
        )
    console.print(table)
    console.print(f"figures written to {out}")


if __name__ == "__main__":
    typer.run(main)
