"""The profile reference, generated from the schema itself (``python -m perfdesk.controllers.reference``), so the
README's reference cannot drift from what the loader accepts (a test checks every key is documented)."""

from __future__ import annotations

from pydantic import BaseModel

from perfdesk.controllers.profile import SessionSection
from perfdesk.controllers.target import known_kinds, target_class
from perfdesk.controllers.trials import TRIAL_KINDS
from perfdesk.controllers.workload import WorkloadSpec


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    return f"`{field.default!r}`" if field.default is not None else "-"


def table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_default(field).replace('|', '/')} | {desc} |")
    return "\n".join(lines)


def sections() -> list[tuple[str, type[BaseModel], tuple[str, ...]]]:
    out: list[tuple[str, type[BaseModel], tuple[str, ...]]] = [("[session]", SessionSection, ())]
    for kind in known_kinds():
        try:
            cls = target_class(kind)
        except ImportError:  # a kind whose provider is not installed
            continue
        if cls.__module__.partition(".")[0] != "perfdesk":  # a kind registered from elsewhere (a plugin, a test)
            continue
        out.append((f'[[targets]] kind = "{kind}"', cls.spec_model, ()))
    out.append(("[[workloads]]", WorkloadSpec, ()))
    # the kinds defined in trials.py first, in its order; those registered by modules of their own after them, by
    # name (their registration order depends on which module a program imports first)
    builtin = ("cold", "warm", "concurrency", "rate", "memory", "stream")
    order = sorted(TRIAL_KINDS, key=lambda k: (builtin.index(k) if k in builtin else len(builtin), k))
    for kind, tk in ((k, TRIAL_KINDS[k]) for k in order):
        out.append((f'[[trials]] kind = "{kind}"', tk.spec, ()))
    from perfdesk.controllers.sections import PricesSection, Thresholds

    out.append(("[thresholds]", Thresholds, ()))
    out.append(("[prices]", PricesSection, ()))
    from perfdesk.controllers.traffic import TrafficSection

    out.append(("[traffic]", TrafficSection, ()))
    from perfdesk.controllers.distributed import LoadSection

    out.append(("[load]", LoadSection, ()))
    return out


def markdown() -> str:
    parts = []
    for title, model, skip in sections():
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        parts.append(f"#### `{title}`\n\n{doc}\n\n{table(model, skip)}\n")
    return "\n".join(parts)


START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def update_readme(path: str) -> bool:
    """Replace the README's reference section with the generated one; True when it changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{markdown()}{END}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--readme":
        print("updated" if update_readme(sys.argv[2]) else "up to date")
    else:
        print(markdown())
