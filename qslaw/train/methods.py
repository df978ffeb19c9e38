"""The adaptation methods behind one switch (``train.method``): what each quantizes, warms up and trains.

How it works
------------
Every method runs the same DAG (quantize → warmup → hybrid → evaluate → export); a :class:`Method` record
says what each stage does for it, so a stage reads one table instead of branching on method names:

============================  ==========  ===========  ======  =======  =============  ===================
method                        weights     calibration  γ       warmup   hybrid mix     final tuning
============================  ==========  ===========  ======  =======  =============  ===================
``qslaw`` (released recipe)   qslaw W4    params       yes     yes      γ + projector  LoRA + projector
``qslaw_no_warmup``           qslaw W4    params       yes     no       γ + projector  LoRA + projector
``lwc_lora``                  qslaw W4    lwc          no      no       no             LoRA + projector
``rtn_lora``                  qslaw W4    rtn          no      no       no             LoRA + projector
``qlora``                     bnb NF4     (none)       no      no       no             LoRA + projector
``lora_fp``                   fp          (none)       no      no       no             LoRA + projector
``full_ft``                   fp          (none)       no      no       no             LLM + projector
============================  ==========  ===========  ======  =======  =============  ===================

"qslaw W4" is this library's :class:`~qslaw.quant.linear.QuantLinear` (uniform asymmetric, groups of
``group_size`` input columns); "bnb NF4" is bitsandbytes' 4-bit NormalFloat with double quantization, the
QLoRA recipe, applied to the same decoder-block linears (vision tower, projector and ``lm_head`` are kept
out by full module name). Baselines skip the warmup and the mix phase: their projector is the base's, as
in LLaVA's own LoRA/QLoRA fine-tuning, and the final tuning phase is the same for every LoRA method
(same data, rank, learning rates, steps), so only the weight format differs between them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """What the DAG does for one adaptation method."""

    name: str
    weights: str
    """'qslaw' (QuantLinear codes), 'bnb_nf4' (bitsandbytes NF4) or 'fp' (unquantized)."""
    calibration: str | None
    """'lwc' or 'rtn' forced by the method; None = params ``quantize.method`` (qslaw) or not quantized."""
    gamma: bool
    """Learnable group scales γ in the blocks after ``start_layer``."""
    warmup: bool
    """Multimodal warmup of γ + projector."""
    mix: bool
    """Hybrid text:multimodal phase of γ + projector, then γ absorbed."""
    tuning: str
    """'lora' (LoRA adapters + projector) or 'full' (every LLM weight + projector)."""

    @property
    def quantized(self) -> bool:
        return self.weights != "fp"

    def calibration_for(self, configured: str) -> str | None:
        """The s/z calibration this method uses, given params ``quantize.method``."""
        if self.weights != "qslaw":
            return None
        return self.calibration or configured


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("qslaw", "qslaw", None, gamma=True, warmup=True, mix=True, tuning="lora"),
    Method("qslaw_no_warmup", "qslaw", None, gamma=True, warmup=False, mix=True, tuning="lora"),
    Method("lwc_lora", "qslaw", "lwc", gamma=False, warmup=False, mix=False, tuning="lora"),
    Method("rtn_lora", "qslaw", "rtn", gamma=False, warmup=False, mix=False, tuning="lora"),
    Method("qlora", "bnb_nf4", None, gamma=False, warmup=False, mix=False, tuning="lora"),
    Method("lora_fp", "fp", None, gamma=False, warmup=False, mix=False, tuning="lora"),
    Method("full_ft", "fp", None, gamma=False, warmup=False, mix=False, tuning="full"),
)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method: must be one of {tuple(METHODS)}, got {name!r}") from None
