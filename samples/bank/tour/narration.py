"""The output helpers and connections every step of the tour shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from eventkit.config import Settings
from eventkit.store.jetstream import JetStreamEventStore
from samples.bank.tour.script import TourResult


class Narration:
    """What every step of the tour shares: its output helpers and connections."""

    settings: Settings
    console: Console
    result: TourResult
    store: JetStreamEventStore | None
    engine: Engine | None
    step_no: int
    notes: list[str]
    server_line: str
    dev_key: bool

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.step_no += 1
        self.console.print()
        self.console.rule(f"[bold cyan]{self.step_no} · {title}", align="left", style="cyan")
        yield

    def say(self, text: str) -> None:
        self.console.print(Padding(Text.from_markup(text), (0, 0, 0, 2), expand=False))

    def _mark(self, mark: str, text: str) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1, no_wrap=True)
        grid.add_column()
        grid.add_row(Text.from_markup(mark), Text.from_markup(text))
        self.console.print(Padding(grid, (0, 0, 0, 2), expand=False))

    def show(self, table: Table) -> None:
        self.console.print(Padding(table, (0, 0, 0, 2), expand=False))

    def ok(self, text: str) -> None:
        self._mark("[green]✓[/]", text)

    def no(self, text: str) -> None:
        self._mark("[red]✗[/]", text)

    def table(self, *columns: str, title: str | None = None) -> Table:
        t = Table(*columns, title=title, title_justify="left", box=None, padding=(0, 3, 0, 0))
        t.title_style = "bold"
        return t

    @property
    def s(self) -> JetStreamEventStore:
        assert self.store is not None
        return self.store

    @property
    def db(self) -> Engine:
        assert self.engine is not None
        return self.engine
