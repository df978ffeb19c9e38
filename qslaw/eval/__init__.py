"""Evaluation for qslaw: ScienceQA generation and scoring, language-model perplexity, comparison reports.

Modules, by concept: ``scienceqa`` (the reference answer parser, categories and per-category accuracy),
``generate`` (batched greedy decoding of LLaVA prompts and the pinned ``GenerationProtocol``),
``perplexity`` (the windowed WikiText protocol), ``report`` (bar chart and accuracy deltas),
``runtime`` (eval-mode and device helpers).
"""

from qslaw.eval.generate import GenerationProtocol, generate_answers
from qslaw.eval.perplexity import perplexity
from qslaw.eval.report import category_bar_chart, delta_table
from qslaw.eval.scienceqa import CATEGORIES, categories, parse_answer, score

__all__ = [
    "CATEGORIES",
    "GenerationProtocol",
    "categories",
    "category_bar_chart",
    "delta_table",
    "generate_answers",
    "parse_answer",
    "perplexity",
    "score",
]
