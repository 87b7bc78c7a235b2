"""Package declaration. `setup.py` is also what Dataflow workers install (--setup_file)."""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    name="amadapter-augment",
    version="0.1.0",
    description="Exemplar-based synthetic data for driving-scene segmentation (AM-Adapter on Beam)",
    python_requires=">=3.10",
    packages=find_packages(include=["amadapter", "amadapter.*", "storage", "transforms", "pipeline", "pipeline.*", "jobs"])
    # The demo model's folders hold only data; as namespace packages setuptools ships them
    # without warning that data folders are "absent from the packages configuration".
    + find_namespace_packages(include=["amadapter.demo_model", "amadapter.demo_model.*"]),
    package_data={"amadapter": ["demo_model/**/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.30",
        "transformers>=4.40",
        "safetensors>=0.4",
        "apache-beam>=2.55",
        "pyarrow>=14",
        "numpy>=1.24",
        "cityscapesscripts>=2.2",
        "webdataset>=0.2.86",
        "pillow>=10",
        "psutil>=5.9",
        "accelerate>=1.0",  # multi-GPU / multi-machine training (jobs.train_*)
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100"],
        # `--runner=DaskRunner` (pipeline.dask_engine.runner): the version tests/test_dask_cluster.py
        # runs; Beam's own apache-beam[dask] extra only asks for >=2024.4.2.
        "dask": ["dask[distributed]==2026.8.0"],
    },
)
