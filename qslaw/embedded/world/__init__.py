"""The synthetic world of the embedded default.

The world generator writes task data in the ScienceQA schema, LLaVA-style image–caption pairs and a
WikiText-style corpus about the same invented world (see ``generate.py``). Modules, by concept:
``scenes`` (pictures and captions of shapes), ``facts`` (the knowledge base), ``img_questions`` /
``txt_questions`` / ``no_questions`` (question templates by context), ``problems`` (choices, answer
balance, ScienceQA rows), ``corpus`` + ``filler`` (the wikitext corpus), ``captions`` (LLaVA JSON),
``generate`` (spec and ``generate_world``).
"""

from qslaw.embedded.world.generate import WorldSpec, generate_world
from qslaw.embedded.world.scenes import Scene, SceneObject, describe_scene, render_scene, sample_scene

__all__ = ["Scene", "SceneObject", "WorldSpec", "describe_scene", "generate_world", "render_scene", "sample_scene"]
