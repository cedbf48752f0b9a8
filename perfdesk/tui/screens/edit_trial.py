"""Edit a trial's parameters in a form; the values are validated by the trial's own schema before they are used."""

from __future__ import annotations

import json

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

FIXED = ("kind", "name")


def parse_value(text: str):
    """Form text to a value: JSON where it parses (numbers, lists, null), else the text itself; blank is None."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_edits(spec, texts: dict[str, str]):
    """A new spec with the edited fields, validated by the spec's model (raises ValidationError)."""
    data = spec.model_dump()
    data.update({k: parse_value(v) for k, v in texts.items()})
    return type(spec).model_validate(data)


def validation_text(exc: ValidationError) -> str:
    return "\n".join(f"{'.'.join(str(p) for p in e['loc']) or 'trial'}: {e['msg']}" for e in exc.errors())


class EditTrialScreen(ModalScreen):
    """Dismisses with the new spec, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, spec) -> None:
        super().__init__()
        self.spec = spec
        self.fields = [f for f in type(spec).model_fields if f not in FIXED]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="edit-box", classes="dialog"):
            yield Static(f"Edit trial [b]{self.spec.name}[/] ({self.spec.kind})", classes="dialog-title")
            for name in self.fields:
                info = type(self.spec).model_fields[name]
                value = getattr(self.spec, name)
                with Horizontal(classes="form-row"):
                    yield Label(name, classes="form-label")
                    yield Input(
                        value="" if value is None else json.dumps(value),
                        id=f"field-{name}",
                        tooltip=info.description,
                        classes="form-input",
                    )
            yield Static("", id="edit-error")
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        inputs = self.query(Input)
        if inputs:
            inputs.first().focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        texts = {name: self.query_one(f"#field-{name}", Input).value for name in self.fields}
        try:
            spec = apply_edits(self.spec, texts)
        except ValidationError as exc:
            self.query_one("#edit-error", Static).update(f"[red]{validation_text(exc)}[/]")
            return
        self.dismiss(spec)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()
