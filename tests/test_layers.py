"""The package's layering: imports point one way (docs/architecture.md, "Packages and their direction")."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vqforge"

#: lowest first; a module may import from its own layer and the layers below it, never from one above
LAYERS = [
    {"io", "config", "devices", "imageio", "metrics"},  # utilities every layer uses
    {"nn"},
    {"quantizers"},
    {"models"},
    {"sampling", "losses"},
    {"data", "api", "bundled"},
    {"train", "evaluate", "compat"},
    {"bench", "serve", "demo"},
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
