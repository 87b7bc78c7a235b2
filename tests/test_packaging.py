"""`pip install .` (what Dataflow's --setup_file and a Dask worker image do) ships every module
the augment graph pickles, and the bundled demo model.

The package is installed NON-editable into a fresh virtual environment. That environment
reaches the dependencies (torch, Beam, ...) through a .pth file naming this interpreter's
site-packages: a path listed in a .pth joins sys.path, but the .pth files inside it (the
editable install's finder among them) are not processed, so the package itself can only
come from the fresh install. Offline: no index, no build isolation.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.internal import pickler

from pipeline.augment_graph import build_augment
from pipeline.options import AugmentOptions
from tests.conftest import REPO

PACKAGES = ("amadapter", "storage", "transforms", "pipeline", "jobs")
DEMO_MODEL = Path("amadapter") / "demo_model"

# Run by the fresh interpreter from a folder outside the repo: import every module of the
# packages, unpickle the graph's functions, and say where the packages came from.
CHECK = """
import importlib, pkgutil, sys
from apache_beam.internal import pickler
for name in sys.argv[2].split(","):
    package = importlib.import_module(name)
    print("package", name, package.__file__)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
        print("module", module.name)
for blob in open(sys.argv[1], "rb").read().split(b"\\n"):
    if blob:
        pickler.loads(blob)
print("unpickled", sys.argv[1])
"""


def _copy_sources(destination: Path) -> Path:
    """The repo's installable files in a scratch folder: pip builds in the source tree, and a
    build must not write build/ or *.egg-info into the checkout (or race other test runs)."""
    source = destination / "src"
    source.mkdir()
    shutil.copy(REPO / "setup.py", source)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return source


def _graph_functions(tmp_path: Path) -> Path:
    """Every ParDo function of the default augment graph, pickled as Beam ships them."""
    options = AugmentOptions(["--output", str(tmp_path / "out"), "--steps", "1"])
    pipeline = beam.Pipeline(options=options)
    build_augment(pipeline, options)
    blobs = []

    class Collect(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                blobs.append(pickler.dumps(node.transform.fn))

    pipeline.visit(Collect())
    assert len(blobs) > 20, blobs  # the whole graph, not a stub
    path = tmp_path / "graph_functions.bin"
    path.write_bytes(b"\n".join(blobs))  # pickler.dumps gives base64 text: no newlines
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site-packages, interpreter) of a fresh venv with the package installed from a copy."""
    root = tmp_path_factory.mktemp("packaging")
    fresh = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = _copy_sources(root)
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--ignore-installed", str(source)]
    subprocess.run(install, check=True, cwd=root, timeout=300)
    shutil.rmtree(source)  # only the installed copy is left to import from
    return site, python


def test_installed_package_imports_every_module_and_unpickles_the_graph(installed, tmp_path):
    site, python = installed
    functions = _graph_functions(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(python), "-c", CHECK, str(functions), ",".join(PACKAGES)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for package in PACKAGES:
        origin = next(line.split()[2] for line in lines if line.startswith(f"package {package} "))
        assert origin.startswith(str(site)), f"{package} imported from {origin}, not the install"
    modules = {line.split()[1] for line in lines if line.startswith("module ")}
    for package in PACKAGES:
        expected = {
            f"{package}.{p.stem}" for p in (REPO / package).glob("*.py") if p.name != "__init__.py"
        }
        assert expected <= modules, sorted(expected - modules)
    assert "pipeline.augment_graph" in modules and "jobs.augment" in modules
    assert lines[-1].startswith("unpickled")


def test_installed_package_holds_the_demo_model(installed):
    site, _ = installed
    shipped = {p.relative_to(REPO / DEMO_MODEL) for p in (REPO / DEMO_MODEL).rglob("*")}
    installed_files = {p.relative_to(site / DEMO_MODEL) for p in (site / DEMO_MODEL).rglob("*")}
    assert shipped and shipped == installed_files, sorted(shipped ^ installed_files)
    for path in (p for p in shipped if (REPO / DEMO_MODEL / p).is_file()):
        assert (site / DEMO_MODEL / path).read_bytes() == (REPO / DEMO_MODEL / path).read_bytes()
