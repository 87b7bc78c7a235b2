"""The prepared GPU check runs its whole plan on CPU with the tiny model, so it does not
rot between the sessions that get a device."""

import json

import pytest

from bench.gpu import CONFIGS, main
from tests.model_helpers import single_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_gpu_check_measures_every_configuration_and_batch(capsys):
    main(["--device", "cpu", "--dtype", "float32", "--architecture", "tiny", "--size", "32", "64",
          "--steps", "1", "--max-batch", "2", "--compile", "off"])  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    measured = {(r["config"], r["batch"]) for r in result["rows"]}
    assert measured == {(c, b) for c in CONFIGS for b in (1, 2)}
    assert all(r["images_per_s"] > 0 and r["compiled"] is False for r in result["rows"])
    assert result["stopped_early"] is None and result["size"] == [32, 64]
