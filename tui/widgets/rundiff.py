"""Two runs compared (``engine.compare.compare``) as rich renderables: each run's card, then one row per
configuration field that differs.  Shared by ``finetui diff`` and the runs screen's overlay."""

from __future__ import annotations


def diff_table(rep: dict, names: bool = True):  # noqa: ANN201 - a rich Group
    """The comparison as rich renderables: the two cards (``names=False``: without the run names, which a
    title already shows), then one row per differing field."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from engine.compare import card_line, fmt_value

    a, b = rep["runs"]
    parts: list = [Text.assemble((f"{tag} ", "bold"), f"{name}  " if names else "", card_line(card))
                   for tag, name, card in zip("AB", (a, b), rep["cards"])]
    if not rep["diff"]:
        parts.append(Text("same configuration: no field differs", "green"))
        return Group(*parts)
    n = len(rep["diff"])
    t = Table(title=f"{n} field{'s differ' if n != 1 else ' differs'}", title_justify="left",
              show_edge=False, header_style="bold", expand=False)
    t.add_column("field", no_wrap=True)
    t.add_column("A", overflow="fold")
    t.add_column("B", overflow="fold")
    for d in rep["diff"]:
        t.add_row(d["field"], fmt_value(d["a"]), fmt_value(d["b"]))
    parts.append(t)
    return Group(*parts)
