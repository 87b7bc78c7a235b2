"""Shared fixtures: paths to the real sample files in ../shared/data."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CITYSCAPES_ROOT = SHARED_DATA / "cityscapes"
BDD_ROOT = SHARED_DATA / "bdd100k"
CITYSCAPES_STEM = "frankfurt_000000_000294"
CITYSCAPES_LABEL_DIR = CITYSCAPES_ROOT / "gtFine" / "val" / "frankfurt"
BDD_MASK = BDD_ROOT / "labels" / "sem_seg" / "masks" / "val" / "0.png"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real sample data missing at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def index_cache(tmp_path_factory) -> Path:
    """Mapped exemplar indexes (``amadapter.retrieval.mapped``) go to a folder of the test
    session, not the user's cache; processes started by tests inherit it."""
    from amadapter.retrieval.mapped import CACHE_ENV

    folder = tmp_path_factory.mktemp("index-cache")
    os.environ[CACHE_ENV] = str(folder)
    return folder
