"""The embedded default: a synthetic ScienceQA-format world and the tiny LLaVA built from it.

Not part of the method library: only the ``base`` and ``prepare`` stages (and benchmarks) import it, and
nothing in ``qslaw`` outside this package does (``tests/test_layout.py``). :mod:`qslaw.embedded.world` writes
the world's task data, captions and corpus in the real formats; :mod:`qslaw.embedded.base` pretrains the tiny
LLaVA (tokenizer, Llama LM, CLIP-style tower, projector) and saves it in the llava-hf format.
"""
