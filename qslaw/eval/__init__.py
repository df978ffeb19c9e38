"""Evaluation for qslaw: ScienceQA generation and scoring, language-model perplexity, comparison reports.

Modules, by concept: ``scienceqa`` (the reference answer parser, categories and per-category accuracy),
``generate`` (batched greedy decoding of LLaVA prompts and the pinned ``GenerationProtocol``),
``perplexity`` (the windowed WikiText protocol), ``report`` (bar chart and accuracy deltas),
``runtime`` (eval-mode and device helpers).
"""
