"""`python -m spqr_fast.devtools.imports`: the package's module-level import graph has no circle.

By default the imports executed when a module loads (its top level); `--lazy` adds those inside
functions, which run later on purpose (heavy optional packages, a command's own code) but still
say which floor depends on which. Prints each circle found and exits 1, else what it checked.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def imports_of(path: Path, modules: set[str], *, lazy: bool = False) -> set[str]:
    """The package modules `path` imports at its top level, or anywhere with `lazy`."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (ast.walk(tree) if lazy else tree.body):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node.level, node.module) if node.level else (node.module or "")
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m in modules and m != name}


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules, lazy=lazy) for p in paths}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def main(argv: list[str] | None = None) -> int:
    """Checks module-level imports, and with `--lazy` those inside functions too (a lower floor
    reaching back up to a higher one, even lazily, is a circle in the design)."""
    lazy = "--lazy" in (argv if argv is not None else sys.argv[1:])
    graph = import_graph(lazy)
    cycles = find_cycles(graph)
    for group in cycles:
        print("import circle: " + " ↔ ".join(group))
    if not cycles:
        kind = "imports (function-level included)" if lazy else "module-level imports"
        print(f"no import circle: {len(graph)} modules, {sum(map(len, graph.values()))} {kind}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
