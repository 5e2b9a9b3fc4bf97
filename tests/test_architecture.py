"""The package's layers: what each may import (docs/architecture.md), checked on the source."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "latentstore"

#: layer -> rank; a module may import latentstore modules of its own rank or lower.
LAYERS = {
    "_version": 0, "_options": 0, "_filesystem": 0, "errors": 0, "progress": 0, "format": 1,
    "quantization": 2, "store": 3,
    "inspection": 4, "interop": 4, "torch": 4, "encoding": 5,
    "cli": 6, "__init__": 6, "__main__": 6,
}
#: Layers that must run with numpy (and zarr) alone.
NUMPY_ONLY = ("_options", "_filesystem", "errors", "progress", "format", "quantization", "store")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, and whether the import sits at module level."""
    tree = ast.parse(path.read_text())
    found = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the package uses absolute imports"
            found.append((node.module, id(node) in top_level))
            found += [(f"{node.module}.{alias.name}", id(node) in top_level) for alias in node.names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "data" not in p.relative_to(PACKAGE).parts)


def known_module(name: str) -> bool:
    parts = name.split(".")
    return (PACKAGE.parent.joinpath(*parts).with_suffix(".py").exists()
            or PACKAGE.parent.joinpath(*parts, "__init__.py").exists())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    own = layer(module_name(path))
    assert own in LAYERS, f"{path}: a new top-level module or layer; add it to LAYERS and docs/architecture.md"
    for name, _ in imports(path):
        if not name.startswith("latentstore.") or not known_module(name):
            continue
        target = layer(name)
        assert LAYERS[target] <= LAYERS[own], f"{module_name(path)} (layer {own}) imports {name} (layer {target})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_command_line_parses_arguments(path):
    if layer(module_name(path)) == "cli" or module_name(path) == "latentstore.__main__":
        return
    for name, _ in imports(path):
        assert name != "argparse", f"{module_name(path)} imports argparse: command-line code belongs in latentstore.cli"
        assert not name.startswith("latentstore.cli"), f"{module_name(path)} imports the command line ({name})"


@pytest.mark.parametrize("path", [p for p in MODULES if layer(module_name(p)) in NUMPY_ONLY],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_numpy_only_layers_never_import_torch_diffusers_or_pillow(path):
    if path.name == "torch_quant.py":  # the torch twin, imported only by torch users
        return
    for name, _ in imports(path):
        root = name.split(".")[0]
        assert root not in ("torch", "diffusers", "PIL"), f"{module_name(path)} imports {name}"


def test_the_import_graph_has_no_cycle():
    graph = {}
    for path in MODULES:
        graph[module_name(path)] = {
            name for name, top in imports(path) if top and name.startswith("latentstore") and known_module(name)
        }
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*trail, node])
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if nxt != node and not node.startswith(nxt + "."):  # a package's __init__ is imported first
                visit(nxt, [*trail, node])
        state[node] = "done"

    for node in graph:
        visit(node, [])
