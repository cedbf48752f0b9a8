"""Targets pane: every target of the profile with its kind, state and key facts."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from perfdesk.controllers.target import TargetStatus

STATE_STYLE = {
    TargetStatus.NOT_DEPLOYED: "dim",
    TargetStatus.DEPLOYING: "yellow",
    TargetStatus.READY: "green",
    TargetStatus.COLD: "cyan",
    TargetStatus.FAILED: "bold red",
    TargetStatus.TORN_DOWN: "dim",
}


def key_facts(describe: dict) -> str:
    """The facts worth a glance (host or function, memory, instance type, workers), from Target.describe()."""
    order = ("host", "function", "function_name", "memory_mb", "instance_type", "region", "workers", "wsgi_threads")
    facts = [f"{k.replace('_name', '')}={describe[k]}" for k in order if describe.get(k) not in (None, "")]
    return " ".join(facts)


class TargetsPane(Vertical):
    """A table of targets; the app tells it states, the actions act on :attr:`selected`."""

    def compose(self) -> ComposeResult:
        yield Static("Targets  [dim]d deploy · c force cold · x tear down[/]", classes="pane-title")
        yield DataTable(id="targets-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("target", key="target")
        table.add_column("kind", key="kind")
        table.add_column("state", key="state")
        table.add_column("facts", key="facts")
        table.add_column("detail", key="detail")

    def set_targets(self, targets: dict) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for name, target in targets.items():
            table.add_row(name, target.kind, self._state_text(target.state), key_facts(target.describe()), "", key=name)

    @staticmethod
    def _state_text(state: TargetStatus) -> Text:
        return Text(str(state), style=STATE_STYLE.get(state, ""))

    def set_state(self, name: str, state: TargetStatus, detail: str = "", facts: str | None = None) -> None:
        table = self.query_one(DataTable)
        if name not in table.rows:
            return
        table.update_cell(name, "state", self._state_text(state), update_width=True)
        table.update_cell(name, "detail", detail[:60], update_width=True)
        if facts is not None:
            table.update_cell(name, "facts", facts, update_width=True)

    @property
    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
