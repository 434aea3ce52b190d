"""The architecture in DESIGN.md, checked on the source: no import cycles among the
project's modules, only ``search`` imports ``search``, and no function longer than
``MAX_FUNCTION_LINES``.

Imports are read with ``ast`` (module level and inside functions alike), never executed. The
helpers are tested on small synthetic packages, so each check is known to fail and to pass.
"""

from __future__ import annotations

import ast
import functools
import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("trainables", "search", "spaces", "analysis")
NOT_IMPORTING_SEARCH = ("analysis", "trainables", "spaces")  # the layers below search
MAX_FUNCTION_LINES = 60  # def line to last line, decorators not counted


# ---- reading the source ---------------------------------------------------------------------


def project_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` under ``root/<package>`` (a package's
    ``__init__.py`` is named after the package)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


@dataclass(frozen=True)
class Import:
    """``importer`` imports project module ``imported`` at ``path:line``; ``main_only``: under
    ``if __name__ == "__main__":``, run only when the file is the script (``python -m``)."""

    importer: str
    imported: str
    path: Path
    line: int
    main_only: bool = False


def _longest_known(name: str, known: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is a project module (None: not ours)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)):
        return False
    sides = [node.test.left, *node.test.comparators]
    return {type(s) for s in sides} == {ast.Name, ast.Constant} and all(
        s.id == "__name__" if isinstance(s, ast.Name) else s.value == "__main__" for s in sides)


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement at any depth, and whether only a ``__main__`` guard runs it."""
    found = []
    todo: list[tuple[ast.AST, bool]] = [(tree, False)]
    while todo:
        node, main_only = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, main_only))
        if _is_main_guard(node):
            todo += [(child, True) for child in node.body]
            todo += [(child, main_only) for child in node.orelse]
            continue
        todo += [(child, main_only) for child in ast.iter_child_nodes(node)]
    return sorted(found, key=lambda item: item[0].lineno)


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of a project module in ``path`` (any depth: functions, methods, ifs).

    ``import a.b`` imports ``a.b``; ``from a import b`` imports the submodule ``a.b`` when
    there is one, else ``a`` (a package means its ``__init__.py``).
    """
    is_package = path.name == "__init__.py"
    found = []
    for node, main_only in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_longest_known(alias.name, known) for alias in node.names]
        else:
            source = _resolve_from(node, module, is_package)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in known else _longest_known(source, known))
        found += [Import(module, t, path, node.lineno, main_only)
                  for t in targets if t and t != module]
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, dict[str, Import]]:
    """importer -> {imported: its first import statement} over the project's modules (the
    first that is not under a ``__main__`` guard, where there is one)."""
    known = project_modules(root, packages)
    graph: dict[str, dict[str, Import]] = {name: {} for name in known}
    for name, path in known.items():
        for imp in imports_of(name, path, known):
            first = graph[name].get(imp.imported)
            if first is None or (first.main_only and not imp.main_only):
                graph[name][imp.imported] = imp
    return graph


# ---- the checks -----------------------------------------------------------------------------


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def _cycle_through(start: str, members: set[str], graph: dict[str, dict[str, Import]]
                   ) -> list[str]:
    """A shortest import path ``start -> ... -> start`` inside one component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # a component always holds one


def _runtime(graph: dict[str, dict[str, Import]]) -> dict[str, dict[str, Import]]:
    """The graph less ``__main__``-guarded imports: a module run as a script is ``__main__``,
    a module of its own, so what it imports then cannot import it back."""
    return {a: {b: imp for b, imp in edges.items() if not imp.main_only}
            for a, edges in graph.items()}


def import_groups(graph: dict[str, dict[str, Import]]) -> list[tuple[list[str], list[str]]]:
    """Each group of modules that import each other, with one shortest cycle through its
    first module (``[a, b, ..., a]``)."""
    runtime = _runtime(graph)
    return [(group, _cycle_through(group[0], set(group), runtime))
            for group in _strongly_connected(runtime)]


def import_cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) for each group of modules that import each other."""
    return [cycle for _, cycle in import_groups(graph)]


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, Import]], root: Path) -> str:
    steps = [graph[a][b] for a, b in itertools.pairwise(cycle)]
    where = "; ".join(f"{s.path.relative_to(root)}:{s.line} imports {s.imported}"
                      for s in steps)
    return f"{' -> '.join(cycle)}  ({where})"


def forbidden_imports(graph: dict[str, dict[str, Import]], layers: tuple[str, ...],
                      forbidden: str) -> list[Import]:
    """Imports of ``forbidden`` (or its submodules) by modules of the packages ``layers``."""
    return [imp for importer in sorted(graph) if importer.split(".")[0] in layers
            for imp in graph[importer].values()
            if imp.imported == forbidden or imp.imported.startswith(forbidden + ".")]


@dataclass(frozen=True)
class LongFunction:
    path: Path
    line: int
    name: str  # qualified: Class.method, outer.<locals>.inner
    length: int


def long_functions(root: Path, packages: tuple[str, ...], limit: int) -> list[LongFunction]:
    """Every ``def`` / ``async def`` (methods and nested functions too) over ``limit`` lines,
    counted from the ``def`` line to the last line of its body."""
    found = []
    for path in project_modules(root, packages).values():
        tree = ast.parse(path.read_text(), filename=str(path))
        todo: list[tuple[ast.AST, str]] = [(tree, "")]
        while todo:
            node, prefix = todo.pop()
            for child in ast.iter_child_nodes(node):
                name = prefix
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = child.end_lineno - child.lineno + 1
                    qualname = prefix + child.name
                    if length > limit:
                        found.append(LongFunction(path, child.lineno, qualname, length))
                    name = qualname + ".<locals>."
                elif isinstance(child, ast.ClassDef):
                    name = prefix + child.name + "."
                todo.append((child, name))
    return sorted(found, key=lambda f: (str(f.path), f.line))


# ---- the project ----------------------------------------------------------------------------


@functools.cache
def _project_graph() -> dict[str, dict[str, Import]]:
    return import_graph(REPO, PACKAGES)


def test_the_walk_sees_the_project():
    graph = _project_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert "trainables.cycle" in graph and "search.cli" in graph
    assert "trainables.params" in graph["trainables.cycle"]  # the walk finds real edges


def test_no_import_cycles():
    graph = _project_graph()
    groups = import_groups(graph)
    assert not groups, "import cycles among the project's modules:\n" + "\n".join(
        f"{len(group)} modules import each other ({', '.join(group)}), e.g. "
        + describe_cycle(cycle, graph, REPO) for group, cycle in groups)


def test_only_search_imports_search():
    bad = forbidden_imports(_project_graph(), NOT_IMPORTING_SEARCH, "search")
    assert not bad, (
        f"{', '.join(NOT_IMPORTING_SEARCH)} must not import search (see DESIGN.md):\n"
        + "\n".join(f"{b.path.relative_to(REPO)}:{b.line}: {b.importer} imports {b.imported}"
                    for b in bad))


def test_functions_are_short():
    long = long_functions(REPO, PACKAGES, MAX_FUNCTION_LINES)
    assert not long, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        f"{f.path.relative_to(REPO)}:{f.line} {f.name} ({f.length} lines)" for f in long)


# ---- the helpers, on synthetic packages -----------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


CLEAN = {
    "low/__init__.py": "",
    "low/a.py": "import os\nfrom low import b\n",
    "low/b.py": "from . import c\nimport low.sub.d\n",
    "low/c.py": "import json\n",
    "low/sub/__init__.py": "",
    "low/sub/d.py": "from ..c import thing\n",
    "top/__init__.py": "",
    "top/e.py": "import low.a\nfrom low.sub import d\n",
}


def test_edges_cover_every_import_form(tmp_path):
    graph = import_graph(_tree(tmp_path, CLEAN), ("low", "top"))
    assert set(graph) == {"low", "low.a", "low.b", "low.c", "low.sub", "low.sub.d", "top",
                          "top.e"}
    edges = {a: set(b) for a, b in graph.items()}
    assert edges["low.a"] == {"low.b"}  # from pkg import submodule: the submodule
    assert edges["low.b"] == {"low.c", "low.sub.d"}  # relative; dotted import
    assert edges["low.sub.d"] == {"low.c"}  # two levels up, a name in a module: the module
    assert edges["top.e"] == {"low.a", "low.sub.d"}
    assert graph["low.b"]["low.sub.d"].line == 2
    assert import_cycles(graph) == []
    assert forbidden_imports(graph, ("low",), "top") == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    files = {**CLEAN, "low/c.py": "def late():\n    from low.a import x\n    return x\n"}
    graph = import_graph(_tree(tmp_path, files), ("low", "top"))
    assert import_cycles(graph) == [["low.a", "low.b", "low.c", "low.a"]]
    message = describe_cycle(import_cycles(graph)[0], graph, tmp_path)
    assert message.startswith("low.a -> low.b -> low.c -> low.a  (low/a.py:2 imports low.b;")
    assert "low/c.py:2 imports low.a" in message


def test_importing_a_package_is_an_edge_to_its_init(tmp_path):
    files = {**CLEAN, "low/__init__.py": "from low.a import y\n", "low/c.py": "import low\n"}
    graph = import_graph(_tree(tmp_path, files), ("low", "top"))
    assert "low" in graph["low.c"]
    assert import_cycles(graph) == [["low", "low.a", "low.b", "low.c", "low"]]


def test_a_main_guard_import_is_no_cycle_but_still_a_layer_breach(tmp_path):
    files = {**CLEAN,
             "low/c.py": 'import sys\nif __name__ == "__main__":\n    from low.a import main\n'
                         '    from top.e import main\n',
             "low/sub/d.py": 'if "__main__" == __name__:\n    import low.b\nelse:\n'
                             '    import low.c\n'}
    graph = import_graph(_tree(tmp_path, files), ("low", "top"))
    assert graph["low.c"]["low.a"].main_only and not graph["low.sub.d"]["low.c"].main_only
    assert import_cycles(graph) == []  # low.a -> low.b -> low.c -> low.a only as a script
    assert [b.importer for b in forbidden_imports(graph, ("low",), "top")] == ["low.c"]
    files["low/c.py"] += "def late():\n    import low.sub.d\n"  # d imports c outside its guard
    graph = import_graph(_tree(tmp_path, files), ("low", "top"))
    assert import_groups(graph) == [(["low.c", "low.sub.d"], ["low.c", "low.sub.d", "low.c"])]


def test_two_separate_cycles_are_both_reported(tmp_path):
    files = {**CLEAN, "low/c.py": "from . import b\n", "top/f.py": "from top.e import z\n",
             "top/e.py": "from .f import z\n"}
    cycles = import_cycles(import_graph(_tree(tmp_path, files), ("low", "top")))
    assert cycles == [["low.b", "low.c", "low.b"], ["top.e", "top.f", "top.e"]]


def test_a_lower_layer_importing_the_top_is_found(tmp_path):
    files = {**CLEAN, "low/c.py": "def f():\n    import top.e.thing\n",
             "low/a.py": "from top import e\n"}
    graph = import_graph(_tree(tmp_path, files), ("low", "top"))
    bad = forbidden_imports(graph, ("low",), "top")
    assert [(b.importer, b.imported, b.line) for b in bad] == [
        ("low.a", "top.e", 1), ("low.c", "top.e", 2)]
    assert forbidden_imports(graph, ("top",), "low") != []  # top may, this only shows it sees


def test_long_functions_are_listed_with_file_line_and_length(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    nested_body = "\n".join(f"            y{i} = {i}" for i in range(60))
    files = {
        "low/__init__.py": "",
        "low/a.py": (
            f"def fits():\n{body}\n\n\n"  # 60 lines: allowed
            f"@decorator\nasync def too_long():\n{body}\n    return 1\n\n\n"  # 61 lines
            f"class K:\n    def method(self):\n        def inner():\n{nested_body}\n"
            "        return inner\n"
        ),
    }
    long = long_functions(_tree(tmp_path, files), ("low",), 60)
    assert [(f.name, f.line, f.length) for f in long] == [
        ("too_long", 64, 61), ("K.method", 128, 63), ("K.method.<locals>.inner", 129, 61)]
    assert long_functions(tmp_path, ("low",), 63) == []
    assert long[0].path == tmp_path / "low" / "a.py"
