"""Help: what the panes show and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# perfdesk: the interactive desk

Compare a **server** (the inference agent: local process, SSH host, EC2) against **functions** (Lambda, the local
emulator) on the same model and load, live. Every request is a row in the session folder's `requests.csv`.

| key | what it does |
|-----|--------------|
| `d` | deploy (provision) the selected target |
| `c` | force a cold start of the selected target |
| `x` | tear the selected target down |
| `r` | run the selected trial on every target it names (deploys first where needed) |
| `a` | run all trials |
| `s` | stop: no new requests, requests in flight end, rows are kept |
| `e` | edit the selected trial's parameters before running it |
| `i` | try one image on every ready target: predictions and timings side by side |
| `l` | next log filter (all, perfdesk, each target) |
| `o` | open a saved session (one: view it; two: compare them side by side) |
| `w` | export this session's CSVs and a combined CSV to a folder |
| `v` | verdict: cost per 1,000 inferences per trial, the break-even rate in words, monthly cost against rate (also on an opened session; `r` there recomputes) |
| `tab` / `shift+tab` | move between panes; arrows move in tables; `[` `]` switch charts |
| `ctrl+p` | command palette: every action above, by name |
| `?` / `f1` | this help |
| `q` | quit (stops the trial, tears every target down, closes the session) |

Charts redraw a few times a second from buffered rows, however many requests per second arrive.
Latency of closed-loop trials (warm, concurrency) is from the actual send; open-loop trials (rate, stream) measure
from the intended send time.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Markdown(HELP)
