"""Data for qslaw: the synthetic world of the embedded default.

The world generator writes task data in the ScienceQA schema, LLaVA-style image–caption pairs and a
WikiText-style corpus about the same invented world (see ``world.py``). Modules, by concept:
``scenes`` (pictures and captions of shapes), ``facts`` (the knowledge base), ``img_questions`` /
``txt_questions`` / ``no_questions`` (question templates by context), ``problems`` (choices, answer
balance, ScienceQA rows), ``corpus`` + ``filler`` (the wikitext corpus), ``captions`` (LLaVA JSON),
``schema`` (features and parquet writers), ``world`` (spec and ``generate_world``).
"""

from qslaw.data.scenes import Scene, SceneObject, describe_scene, render_scene, sample_scene
from qslaw.data.schema import SCIENCEQA_FEATURES, WIKITEXT_FEATURES, context_type
from qslaw.data.world import WorldSpec, generate_world

__all__ = [
    "SCIENCEQA_FEATURES",
    "WIKITEXT_FEATURES",
    "Scene",
    "SceneObject",
    "WorldSpec",
    "context_type",
    "describe_scene",
    "generate_world",
    "render_scene",
    "sample_scene",
]
