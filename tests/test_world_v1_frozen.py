"""World v1 is what the bundled model, `make demo`, the tests and every RESULTS figure use:
its scenes must not change when v2 is added beside it. Checksums taken before v2 existed."""

import hashlib

import pytest

from amadapter import world

# (layout seed, style seed, height, width) -> sha256[:16] of the label map and of the photo
V1_SCENES = {
    (0, 0, 64, 128): ("41fec6e4d89b617d", "dc7b1262b4582039"),
    (17, 4, 64, 128): ("1f2bafccf4cec62e", "df93159b6afde1f5"),
    (900001, 900001, 96, 192): ("f95796c126dec80d", "c33e46fb55036f3a"),
    (800003, 5, 32, 64): ("d6bab0cf144ef3d0", "92d19aca3b511148"),
}


@pytest.mark.parametrize("key", sorted(V1_SCENES))
def test_v1_scenes_are_unchanged(key):
    photo, labels = world.scene(*key)
    digest = lambda a: hashlib.sha256(a.tobytes()).hexdigest()[:16]  # noqa: E731
    assert (digest(labels), digest(photo)) == V1_SCENES[key]
