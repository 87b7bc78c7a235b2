"""The house's floors, read from the source (every import statement, also those inside
functions): bench -> jobs -> pipeline -> transforms -> storage -> amadapter, and inside amadapter its
subpackages in the order of docs/architecture.md. A module imports only its own floor or
lower ones, so no arrow runs back up and there is no circle."""

import ast
from pathlib import Path

from tests.conftest import REPO

FLOORS = {"amadapter": 0, "storage": 1, "transforms": 2, "pipeline": 3, "jobs": 4, "bench": 5}
# amadapter's subpackages (and top-level modules): a part imports only parts of lower rank.
AMADAPTER_RANKS = {
    "io": 0,
    "models": 1, "world": 1, "retrieval": 1, "data": 1,
    "pipelines": 2, "filtering": 2, "evaluation": 2,
    "training": 3,
}  # fmt: skip


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_no_floor_imports_a_floor_above_it():
    upward = []
    for package, floor in FLOORS.items():
        for path in _modules(package):
            for name in _imports(path):
                top = name.split(".")[0]
                if FLOORS.get(top, -1) > floor:
                    upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert upward == []


def test_inside_amadapter_every_arrow_points_down():
    upward = []
    for path in _modules("amadapter"):
        parts = path.relative_to(REPO / "amadapter").parts
        if len(parts) == 1 and path.stem == "__init__":
            continue  # the package's lazy public names
        part = parts[0] if len(parts) > 1 else path.stem
        assert part in AMADAPTER_RANKS, f"{part}: give the new part a rank here and in docs/architecture.md"
        for name in _imports(path):
            pieces = name.split(".")
            if pieces[0] != "amadapter" or len(pieces) < 2 or pieces[1] == part:
                continue
            if AMADAPTER_RANKS.get(pieces[1], 99) >= AMADAPTER_RANKS[part]:
                upward.append(f"{path.relative_to(REPO)} ({part}) imports {name}")
    assert upward == []
