"""AM-Adapter: exemplar-based synthesis of driving scenes that follow a label map.

Pure PyTorch + diffusers; knows nothing of Beam (see DESIGN.md section 4).

The model's public classes are exported here: checkpoints name their custom
components under the library "amadapter" in ``model_index.json``, and diffusers'
``from_pretrained`` looks them up on this package.
"""

from amadapter.matcher import AppearanceMatchingAdapter
from amadapter.pipeline_amadapter import AMAdapterPipeline, AMAdapterPipelineOutput
from amadapter.prompt_embeddings import PromptEmbeddings
from amadapter.structure_encoder import StructureEncoder

__all__ = [
    "AMAdapterPipeline",
    "AMAdapterPipelineOutput",
    "AppearanceMatchingAdapter",
    "PromptEmbeddings",
    "StructureEncoder",
]
