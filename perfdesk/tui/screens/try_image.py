"""Try one image: send a chosen image to every ready target and show predictions and timings side by side."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Select, Static
from textual.worker import get_current_worker

from perfdesk.controllers.workload import BUNDLED_PHOTOS, Payload, WorkloadSpec, build_payloads
from perfdesk.shipped.wire import encode_request
from perfdesk.tui.fmt import fmt
from perfdesk.tui.messages import ImageAnswered

SYNTHETIC = "synthetic"


def one_image_payload(choice: str, workload: WorkloadSpec, base_dir: Path) -> Payload:
    """One request carrying one image: a bundled photo by name, a synthetic image, or an image file's bytes."""
    options = {**workload.request_options(), "annotate": False}
    if choice in BUNDLED_PHOTOS or choice == SYNTHETIC:
        spec = workload.model_copy(
            update={
                "images": "bundled" if choice != SYNTHETIC else SYNTHETIC,
                "batch": 1,
                "image_count": len(BUNDLED_PHOTOS) if choice != SYNTHETIC else 1,
            }
        )
        payloads = build_payloads(spec)
        return next((p for p in payloads if p.names[0] == choice), payloads[0])
    path = Path(choice).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    blob = path.read_bytes()
    return Payload([path.name], [blob], encode_request([blob], options), 1, request_options=options)


class TryImageScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close"), Binding("ctrl+s", "send", "Send")]

    def __init__(self, targets: dict, workload: WorkloadSpec, base_dir: Path) -> None:
        super().__init__()
        self.targets = targets  # name -> Target, the ready ones
        self.workload = workload
        self.base_dir = base_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="try-box", classes="dialog"):
            yield Static(
                f"Try one image on {len(self.targets)} ready target(s): "
                f"{', '.join(self.targets) or 'none (deploy one first: d)'}",
                classes="dialog-title",
            )
            with Horizontal(classes="form-row"):
                yield Select(
                    [(n, n) for n in (*BUNDLED_PHOTOS, SYNTHETIC)],
                    value=BUNDLED_PHOTOS[0],
                    allow_blank=False,
                    id="image-choice",
                )
                yield Input(placeholder="or a path to a JPEG/PNG/WebP file", id="image-path")
            yield DataTable(id="answers", cursor_type="row")
            yield Static("", id="try-status")
            with Horizontal(classes="buttons"):
                yield Button("Send (ctrl+s)", variant="primary", id="send")
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in ("target", "status", "top-1", "round trip ms", "server ms", "inference ms", "cold", "error"):
            table.add_column(col, key=col)

    def action_close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        self.dismiss(None)

    def action_send(self) -> None:
        if not self.targets:
            self.query_one("#try-status", Static).update("[red]no ready target: deploy one first (d)[/]")
            return
        path = self.query_one("#image-path", Input).value.strip()
        choice = path or str(self.query_one("#image-choice", Select).value)
        self.query_one(DataTable).clear()
        self.query_one("#try-status", Static).update(f"sending {choice} ...")
        self.send_image(choice)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_send() if event.button.id == "send" else self.action_close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_send()

    @work(thread=True, exclusive=True, exit_on_error=False, group="try-image")
    def send_image(self, choice: str) -> None:
        worker = get_current_worker()
        try:
            payload = one_image_payload(choice, self.workload, self.base_dir)
        except (OSError, ValueError) as exc:
            self.app.call_from_thread(self.query_one("#try-status", Static).update, f"[red]{exc}[/]")
            return
        for name, target in self.targets.items():
            if worker.is_cancelled:
                return
            self.post_message(ImageAnswered(name, target.send(payload)))
        self.app.call_from_thread(
            self.query_one("#try-status", Static).update,
            f"{payload.names[0]} ({payload.payload_bytes} bytes) sent to every ready target",
        )

    def on_image_answered(self, message: ImageAnswered) -> None:
        r = message.result
        self.query_one(DataTable).add_row(
            message.target,
            r.status,
            r.top1 or "-",
            fmt(r.service_ms),
            fmt(r.server_total_ms),
            fmt(r.server_inference_ms),
            "yes" if r.cold else "",
            (r.error or "")[:60],
            key=message.target,
        )
