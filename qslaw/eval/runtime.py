"""Small model-runtime helpers shared by generation and perplexity.

How it works
------------
:func:`evaluating` puts a model in eval mode (no dropout: decoding and NLL are deterministic) and restores
its previous mode afterwards, so an evaluation inside a training loop leaves the loop's state alone.
:func:`model_device` is where inputs must go: the device of the model's first parameter or buffer (CPU for a
module with neither), which also works for plain ``nn.Module`` stand-ins that lack HF's ``.device``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block, the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer; CPU for a stateless module."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")
