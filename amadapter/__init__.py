"""AM-Adapter: exemplar-based synthesis of driving scenes that follow a label map.

Pure PyTorch + diffusers; knows nothing of Beam (docs/architecture.md: the floors).

The model's public classes are exported here: checkpoints name their custom
components under the library "amadapter" in ``model_index.json``, and diffusers'
``from_pretrained`` looks them up on this package. They load lazily, so that
``import amadapter.io.labels`` stays free of torch and diffusers.
"""

import importlib

_EXPORTS = {
    "AMAdapterPipeline": "amadapter.pipelines.pipeline_amadapter",
    "AMAdapterPipelineOutput": "amadapter.pipelines.pipeline_amadapter",
    "AppearanceMatchingAdapter": "amadapter.models.matcher",
    "PromptEmbeddings": "amadapter.models.prompt_embeddings",
    "StructureEncoder": "amadapter.models.structure_encoder",
    # diffusers picks a component's load method by finding its base class on the
    # component's library (here this package), so the base class is exported too
    "ModelMixin": "diffusers.models.modeling_utils",
}

__all__ = sorted(name for name in _EXPORTS if name != "ModelMixin")


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'amadapter' has no attribute {name!r}")
