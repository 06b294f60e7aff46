"""The core's layering, checked on the source: which subpackage may import which, no cycles, no
ROS or command line inside the core, and no file past the size a reader can hold."""
import ast
import re
from pathlib import Path

import pytest

from snn_drone.core import LAYERS

CORE = Path(__file__).resolve().parents[1] / "snn_drone" / "core"
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: Path, core: Path = CORE) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of ``path``, relative ones resolved."""
    rel = path.relative_to(core.parent.parent).with_suffix("")
    package = list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if mod.startswith("snn_drone"):  # the names may be submodules
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _core_files():
    return sorted(p for p in CORE.rglob("*.py"))


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["snn_drone", "core"] else None


def test_every_core_module_lives_in_a_declared_subpackage():
    subs = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subs == set(LEVEL), f"subpackages on disk {sorted(subs)} != LAYERS {sorted(LEVEL)}"
    loose = [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a subpackage: {loose}"
    for s in subs:
        doc = ast.get_docstring(ast.parse((CORE / s / "__init__.py").read_text()))
        assert doc and "import" in doc, f"core/{s}/__init__.py must say what it holds and may import"


def _violations(core: Path) -> list[str]:
    bad, seen = [], set()
    for path in sorted(core.rglob("*.py")):
        here = _subpackage(".".join(path.relative_to(core.parent.parent).with_suffix("").parts))
        for line, mod in _imports(path, core):
            where = f"{path.relative_to(core)}:{line} imports {mod}"
            if (path, line) in seen:  # one report per import statement
                continue
            if mod.split(".")[0] in ("rclpy", "launch", "launch_ros") or mod.startswith(
                    ("snn_drone.nodes", "snn_drone.commands", "snn_drone.cli", "snn_drone.graphs",
                     "snn_drone.launcher")):
                bad.append(where + " (the core stays free of ROS and the command line)")
                seen.add((path, line))
            there = _subpackage(mod)
            if here is None or there is None or there == here:
                continue
            if there not in LEVEL or LEVEL[there] >= LEVEL[here]:
                bad.append(f"{where} ({there} is level {LEVEL.get(there)}, {here} is level {LEVEL[here]})")
                seen.add((path, line))
    return bad


def test_no_core_module_imports_a_higher_or_sibling_subpackage_ros_or_the_cli():
    bad = _violations(CORE)
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_no_import_cycle_between_core_modules():
    graph = {}
    for path in _core_files():
        me = ".".join(path.relative_to(CORE.parent.parent).with_suffix("").parts)
        graph[me.removesuffix(".__init__")] = set()
    for path in _core_files():
        me = ".".join(path.relative_to(CORE.parent.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[me] = {m for _, m in _imports(path) if m in graph and m != me and not me.endswith("core")}
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2
    for n in graph:
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_files_stay_readable(path):
    n = len(path.read_text().splitlines())
    assert n <= 400, f"core/{path.relative_to(CORE)} has {n} lines; split it where it does two jobs"


def test_the_check_catches_upward_sibling_and_ros_imports(tmp_path):
    core = tmp_path / "snn_drone" / "core"
    for sub in ("sim", "learning", "deploy"):
        (core / sub).mkdir(parents=True)
    (core / "sim" / "bad.py").write_text("import os\nfrom ..learning.trainer import Trainer\nfrom ..sim import x\n")
    (core / "deploy" / "bad.py").write_text("from snn_drone.core.learning import seeds\nimport rclpy\n"
                                            "from ..sim.bad import y\n")
    assert _violations(core) == [
        "deploy/bad.py:1 imports snn_drone.core.learning (learning is level 4, deploy is level 4)",
        "deploy/bad.py:2 imports rclpy (the core stays free of ROS and the command line)",
        "sim/bad.py:2 imports snn_drone.core.learning.trainer (learning is level 4, sim is level 1)",
    ]


def test_the_readme_paper_table_names_code_that_exists():
    """Every `file`: `name` in the README's "Where the paper is in the code" table is defined there."""
    readme = (CORE.parents[1] / "README.md").read_text()
    section = readme[readme.index("### Where the paper is in the code"):]
    section = section[:section.find("\n#", 5)] if "\n#" in section[5:] else section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 12
    checked = 0
    for row in rows:
        cell = row.rstrip("|").split("|")[-1]
        current = None
        for token in re.findall(r"`([^`]+)`", cell):
            if token.endswith(".py"):
                current = CORE / token
                assert current.exists(), f"README names {token}, which is not in snn_drone/core"
                tree = ast.parse(current.read_text())
                names = {n.name for n in ast.walk(tree)
                         if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
                names |= {t.target.id for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                          for t in n.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
            elif current is not None and re.fullmatch(r"[A-Za-z_][\w.]*", token):
                assert token.split(".")[-1] in names, f"README: {current.name} has no {token}"
                checked += 1
    assert checked >= 20
