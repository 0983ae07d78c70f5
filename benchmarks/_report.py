"""Shared by the benchmark scripts: a plain text table (DESIGN section 9:
a readable table, then one JSON line; each script prints that itself with json.dumps)."""

from __future__ import annotations


def table(rows: list[tuple], head: tuple) -> str:
    cells = [tuple(str(c) for c in head)] + [tuple(str(c) for c in r) for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)
