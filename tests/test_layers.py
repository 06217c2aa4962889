"""The package's layering: imports point one way (docs/architecture.md, "Packages and their direction")."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vqforge"

#: lowest first; a module may import from its own layer and the layers below it, never from one above
LAYERS = [
    {"io", "config", "devices", "imageio", "metrics", "labels", "modeldir", "memory"},  # utilities every layer uses
    {"nn"},
    {"quantizers"},
    {"models"},
    {"sampling", "losses"},
    {"data", "api", "bundled", "compat", "hub", "quick"},
    {"train", "evaluate"},
    {"benchmarks", "serve", "demo"},
    {"commands", "cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit(parts: list[str]) -> str:
    """The layer unit of a module path inside vqforge: its sub-package, or a top-level module's name."""
    return parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """The vqforge units that ``path`` imports from (absolute or relative, at any depth of the file)."""
    here = list(path.relative_to(SRC).with_suffix("").parts)
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = (package[:len(package) - node.level + 1] if node.level > 1 else package)
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if target else [[a.name] for a in node.names]
            found.update(unit(t) for t in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vqforge."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vqforge."))
    return found


def test_every_package_is_placed_in_a_layer():
    units = {unit([p.name]) for p in SRC.iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    units -= {"__init__", "__main__", "__version__"}
    assert units <= set(LEVEL), f"place these in LAYERS: {sorted(units - set(LEVEL))}"


def test_imports_point_one_way():
    """nn -> quantizers -> models -> sampling/losses -> data/train/evaluate/compat -> commands: nothing imports
    from a layer above its own (entry points, ``__main__.py``, and the package's ``__init__`` excepted)."""
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if path.name == "__main__.py" or rel == Path("__init__.py"):
            continue
        me = unit(list(rel.parts))
        for other in imported_units(path) - {me, "__version__"}:
            if other in LEVEL and LEVEL[other] > LEVEL[me]:
                upward.append(f"{rel}: {me} (layer {LEVEL[me]}) imports {other} (layer {LEVEL[other]})")
    assert not upward, "\n".join(upward)


def module_name(path: Path) -> str:
    """``src/vqforge/train/loop.py`` -> ``vqforge.train.loop`` (a package's ``__init__.py`` -> the package)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the vqforge modules it imports, at any depth of the file (inside functions and
    ``if TYPE_CHECKING:`` blocks too). ``from pkg import name`` points at ``pkg.name`` when that is a module."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                mod = ".".join(base + (node.module.split(".") if node.module else []))
                targets += [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        found = set()
        for t in targets:
            while t and t not in modules:  # ``vqforge.x.Name`` -> ``vqforge.x``
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
        graph[name] = found
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    """No two modules import each other, directly or around a circle, not even from inside a function: a
    circle means neither side can be read (or changed) without the other."""
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_lazy_imports(tmp_path):
    """A circle closed by an import inside a function is found; a one-way graph has none."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "vqforge.models.conditioning.base" in graph["vqforge.models.conditioning.spatial"]
    assert "vqforge.api" in graph["vqforge.train.transformer"]  # ``from ..api import load`` in a function


def test_entry_points_do_not_import_the_command_line():
    """Only ``vqforge/__main__.py`` (the ``python -m vqforge`` entry point) may import ``vqforge.cli``."""
    users = sorted(m for m, deps in import_graph().items() if "vqforge.cli" in deps and m != "vqforge.__main__")
    assert not users, f"modules importing vqforge.cli: {users}"


def test_the_check_sees_relative_imports(tmp_path):
    """The parser resolves ``from ..x import y`` and ``from .. import x`` to the unit ``x``."""
    assert imported_units(SRC / "models" / "vqgan.py") >= {"nn", "quantizers"}
    assert "train" in imported_units(SRC / "commands" / "train_vqgan.py")


def test_nothing_outside_the_quantizers_branches_on_a_kind_name():
    """A quantizer kind lives in its own module: code elsewhere asks the quantizer or its config, never compares
    ``kind`` with a name (the conditioning modes have the same test in test_conditioning.py)."""
    import re

    from vqforge.quantizers.registry import KINDS

    names = "|".join(map(re.escape, KINDS.names()))
    compare = re.compile(rf'(==|!=)\s*"({names})"|"({names})"\s*(==|!=)|\bin\s*[(\[{{][^)\]}}\n]*"({names})"')
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if {"quantizers", "compat"} & set(path.relative_to(SRC).parts):  # the kinds; the original's names
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "kind" in line and compare.search(line):  # ("l2" also names a pixel loss)
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_one_yaml_reader_and_one_model_directory_reader():
    """YAML files are read by ``io.read_yaml`` (values by ``io.parse_yaml``) and ``model.yaml`` by
    ``modeldir.read_model_meta``, nowhere else: one set of error messages, one check of what a file holds."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        if rel != "io.py" and ("yaml.safe_load(" in text or "yaml.load(" in text):
            offenders.append(f"{rel}: parses YAML itself (use vqforge.io.read_yaml / parse_yaml)")
        if rel != "modeldir.py" and '"model.yaml"' in text:
            offenders.append(f"{rel}: names model.yaml itself (use vqforge.modeldir)")
    assert not offenders, "\n".join(offenders)


def test_one_naming_scheme_and_the_old_names_for_one_release():
    """Each trainer module has ``<Stage>RunConfig`` (the run's whole config), ``<Stage>Settings`` (its ``train:``
    section), ``load_config(path, overrides)`` and ``train_<stage>``; code says ``n_codes`` for the codebook size
    (``n_embed`` is the YAML key). The names before that keep working one release, with a DeprecationWarning."""
    import importlib

    import pytest

    from vqforge.quantizers import VQConfig

    for stage, module in (("VQGAN", "vqgan"), ("Transformer", "transformer"), ("Condition", "condition")):
        m = importlib.import_module(f"vqforge.train.{module}")
        for name in (f"{stage}RunConfig", f"{stage}Settings", "load_config", f"train_{module}"):
            assert hasattr(m, name), f"vqforge.train.{module} has no {name}"
    assert VQConfig(n_embed=64, embed_dim=4).n_codes == 64
    old = {"vqforge.train.vqgan": {"VQGANTrainConfig": "VQGANRunConfig", "load_run_config": "config_of_run"},
           "vqforge.train.transformer": {"TransformerTrainConfig": "TransformerSettings",
                                         "load_run_config": "load_config", "train": "train_transformer"},
           "vqforge.train.settings": {"load_run_config": "read_run_config"}}
    for module, names in old.items():
        m = importlib.import_module(module)
        for was, now in names.items():
            with pytest.warns(DeprecationWarning, match=rf"{module}\.{was} is now {module}\.{now}"):
                assert getattr(m, was) is getattr(m, now)


#: modules and functions over the limits today, each waiting for the change that splits it (none now)
LARGE_MODULES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()


def test_modules_and_functions_stay_small():
    """No module over 400 lines, no function over 60 (docstring included): a file is read whole, a function at
    a glance. Known offenders are listed in :data:`LARGE_MODULES` / :data:`LONG_FUNCTIONS`; one that is fixed
    must leave its list."""
    large_modules, long_functions = set(), set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > 400:
            large_modules.add(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.add(f"{rel}:{node.name}")
    assert large_modules <= LARGE_MODULES, f"modules over 400 lines: {sorted(large_modules - LARGE_MODULES)}"
    assert long_functions <= LONG_FUNCTIONS, f"functions over 60 lines: {sorted(long_functions - LONG_FUNCTIONS)}"
    fixed = (LARGE_MODULES - large_modules) | (LONG_FUNCTIONS - long_functions)
    assert not fixed, f"now within the limits, remove from LARGE_MODULES / LONG_FUNCTIONS: {sorted(fixed)}"


#: the most lines of a command module: argument parsing and one library call (issue 27)
COMMAND_LINES = 80
#: command modules over it today, each waiting for its change
THICK_COMMANDS: set[str] = set()
#: the flags every command shares (argparse set-up only: no runner), exempt
SHARED_OPTIONS = {"commands/options.py"}


def test_commands_are_thin():
    """A command module parses its arguments and calls the library once (``vqforge.evaluate.nll.evaluate_nll``,
    ``vqforge.data.encode.encode_job``, ...): at most :data:`COMMAND_LINES` lines, so that whatever a library
    user would need lives in the library, not behind the command line. Known offenders are listed in
    :data:`THICK_COMMANDS`; one that is fixed must leave the list."""
    thick = set()
    for path in sorted((SRC / "commands").glob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in SHARED_OPTIONS and len(path.read_text().splitlines()) > COMMAND_LINES:
            thick.add(rel)
    assert thick <= THICK_COMMANDS, f"command modules over {COMMAND_LINES} lines: {sorted(thick - THICK_COMMANDS)}"
    fixed = THICK_COMMANDS - thick
    assert not fixed, f"now within {COMMAND_LINES} lines, remove from THICK_COMMANDS: {sorted(fixed)}"
