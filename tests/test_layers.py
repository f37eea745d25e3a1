"""The package's imports run one way: a subpackage imports only from layers below it (DESIGN.md's
data -> models -> memorization/neighbours -> influence/gan -> cli), never back up."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genmem"
LAYERS = [
    {"errors", "__version__"},
    {"validation", "outputs", "device", "distributed", "philox"},
    {"seeds", "distances"},
    {"data", "results"},
    {"models"},
    {"memorization", "neighbours", "plots"},
    {"influence", "gan"},
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def imported_layers(path):
    """The top-level genmem names (subpackages or modules) that the file at ``path`` imports."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            yield from ([target[0]] if target else [alias.name for alias in node.names])
        elif node.module and node.module.startswith("genmem."):
            yield node.module.split(".")[1]


def test_every_module_sits_in_a_layer():
    names = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert names <= set(RANK), f"add to LAYERS: {sorted(names - set(RANK))}"


def test_imports_only_run_down_the_layers():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        owner = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if owner == "__init__":
            continue
        for target in set(imported_layers(path)) - {owner}:
            if RANK[target] >= RANK[owner]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not upward, upward
