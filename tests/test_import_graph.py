"""Dependencies point one way: services -> outbox -> transports (smtp, imap), and no two
parts of sendas import each other (a part: a subpackage such as ``outbox``, or a top-level
module such as ``merge``). Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import sendas

SRC = Path(sendas.__file__).parent
EDGES = ("api", "web", "cli")
FORBIDDEN = {
    "outbox": {"services", *EDGES},
    "smtp": {"outbox", "services", *EDGES},
    "imap": {"outbox", "services", *EDGES},
}

Imports = dict[tuple[str, str], list[str]]
"""(importing part, imported part) -> where: ``path:line``."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    # ``from sendas import outbox`` imports the part ``outbox``.
    return [f"{base}.{alias.name}" for alias in node.names] if base == "sendas" else [base]


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "sendas" and len(parts) > 1 else None


def part_imports() -> Imports:
    found: Imports = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        source = _part(module)
        if source is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for name in _imported(node, module, path.name == "__init__.py"):
                target = _part(name)
                if target is not None and target != source:
                    where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', 0)}"
                    found[(source, target)].append(where)
    return found


def _cycle_edges(imports: Imports) -> list[tuple[str, str]]:
    """Edges that lie on a cycle: ``a -> b`` where ``b`` reaches ``a`` again."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in imports:
        graph[a].add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    return sorted((a, b) for a, b in imports if reaches(b, a))


def test_the_graph_is_read() -> None:
    imports = part_imports()
    assert ("services", "outbox") in imports  # the services call the outbox
    assert ("outbox", "smtp") in imports  # the outbox calls the transports


def test_no_forbidden_direction() -> None:
    imports = part_imports()
    bad = [
        f"sendas.{a} -> sendas.{b} at {', '.join(where)}"
        for (a, b), where in sorted(imports.items())
        if b in FORBIDDEN.get(a, set())
    ]
    assert not bad, "imports against the direction services -> outbox -> transports:\n" + (
        "\n".join(bad)
    )


def test_no_cycle_between_parts() -> None:
    imports = part_imports()
    bad = [
        f"sendas.{a} -> sendas.{b} at {', '.join(imports[(a, b)])}"
        for a, b in _cycle_edges(imports)
    ]
    assert not bad, "these imports close a cycle between parts of sendas:\n" + "\n".join(bad)


def test_a_cycle_is_reported_with_its_edges() -> None:
    imports: Imports = {("services", "outbox"): ["s.py:1"], ("outbox", "services"): ["o.py:2"],
                        ("outbox", "smtp"): ["o.py:3"]}  # fmt: skip
    assert _cycle_edges(imports) == [("outbox", "services"), ("services", "outbox")]
