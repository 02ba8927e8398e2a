"""Checks on the shape of the package itself: short functions, no import cycle, the store behind the registry."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qadistill"
MAX_BODY_LINES = 60
# functions still over the limit, by "module:qualified name": this set only ever shrinks
LONG_FUNCTIONS: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")


def long_functions() -> dict[str, int]:
    """Every function whose body (docstring included, signature excluded) is over MAX_BODY_LINES lines."""
    found = {}
    for mod, f in _modules().items():
        short = mod.removeprefix("qadistill.").removeprefix("qadistill")
        for name, node in _functions(ast.parse(f.read_text())):
            n = node.end_lineno - node.body[0].lineno + 1
            if n > MAX_BODY_LINES:
                found[f"{short}:{name}"] = n
    return found


def _top_level_imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """qadistill modules a module imports when it is imported: module level only (imports inside functions run later),
    ``if TYPE_CHECKING:`` blocks excluded."""
    deps: set[str] = set()

    def visit(stmts) -> None:
        for node in stmts:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in known:
                        deps.add(sub)
                    elif base in known:
                        deps.add(base)

    visit(tree.body)
    deps.discard(module)
    return deps


def import_cycles() -> list[list[str]]:
    mods = _modules()
    known = set(mods)
    graph = {m: _top_level_imports(ast.parse(f.read_text()), m, f.name == "__init__.py", known) for m, f in mods.items()}
    cycles, state = [], {}

    def walk(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                walk(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
    return cycles


def test_no_function_over_the_limit():
    found = long_functions()
    new = {k: v for k, v in found.items() if k not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_BODY_LINES} lines (split them into named steps): {new}"
    fixed = LONG_FUNCTIONS - set(found)
    assert not fixed, f"now short enough, take them off LONG_FUNCTIONS: {sorted(fixed)}"


def test_no_import_cycle():
    assert import_cycles() == []


def test_the_store_is_reached_through_the_registry():
    """Only registry.py and store.py touch the registry's private store attribute."""
    offenders = [str(f.relative_to(PACKAGE.parent)) for f in PACKAGE.rglob("*.py")
                 if f.name not in ("registry.py", "store.py") and "_store" in f.read_text()]
    assert offenders == []
