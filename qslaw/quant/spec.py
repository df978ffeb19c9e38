"""The quantization spec: one small frozen record that flows through the whole library.

How it works
------------
``QuantSpec`` names everything the maths needs and nothing a stage or CLI owns:

* ``bits`` — integer code width b; codes live in ``[0, 2^b - 1]`` (asymmetric uniform with a zero point).
* ``group_size`` — g consecutive input columns of one output row share a step ``s`` and zero ``z``
  (the GPTQ/AWQ layout: ``W.reshape(out, in // g, g)``). ``in_features % g`` must be 0.
* ``start_layer`` — decoder blocks with index ``> start_layer`` get a learnable ``γ`` per group
  (the released scripts use 5: blocks 0..5 are quantized without ``γ``). ``-1`` gives every block ``γ``.
* ``targets`` — suffixes of the linear layers replaced inside a decoder block (q, k, v, o, gate, up,
  down by default). Only modules inside the language model's decoder blocks are ever considered, so the
  vision tower, projector, embeddings and lm_head are never quantized whatever the patterns say.
* ``gamma_mode`` — ``requant`` (reference-exact, keeps the full-precision ``W``) or ``packed``
  (memory-efficient, keeps only the integer codes); see :mod:`qslaw.quant.linear`.

Invalid values raise ``ValueError`` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SUPPORTED_BITS = (2, 3, 4, 8)
GAMMA_MODES = ("requant", "packed")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class QuantSpec:
    """How the LLM's linear weights are quantized."""

    bits: int = 4
    """Code width in bits; one of 2, 3, 4, 8."""
    group_size: int = 128
    """Consecutive input columns sharing one (s, z) pair and one γ."""
    start_layer: int = 5
    """Blocks with index > start_layer get γ; -1 means every block."""
    targets: tuple[str, ...] = DEFAULT_TARGETS
    """Name suffixes of the decoder-block linears to quantize."""
    gamma_mode: str = "requant"
    """'requant' (keeps W, reference-exact) or 'packed' (codes only, Ŵ = γ·s·(q − z))."""
    gamma: bool = True
    """Whether any block gets γ (False: plain RTN/LWC weights, the ``*_lora`` baselines)."""

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or self.bits not in SUPPORTED_BITS:
            raise ValueError(f"bits: must be one of {SUPPORTED_BITS}, got {self.bits!r}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 2:
            raise ValueError(f"group_size: must be an integer >= 2, got {self.group_size!r}")
        if isinstance(self.start_layer, bool) or not isinstance(self.start_layer, int) or self.start_layer < -1:
            raise ValueError(f"start_layer: must be an integer >= -1, got {self.start_layer!r}")
        if not isinstance(self.targets, tuple) or not self.targets or not all(
            isinstance(t, str) and t for t in self.targets
        ):
            raise ValueError(f"targets: must be a non-empty tuple of module-name suffixes, got {self.targets!r}")
        if self.gamma_mode not in GAMMA_MODES:
            raise ValueError(f"gamma_mode: must be one of {GAMMA_MODES}, got {self.gamma_mode!r}")
        if not isinstance(self.gamma, bool):
            raise ValueError(f"gamma: must be true or false, got {self.gamma!r}")

    @property
    def qmax(self) -> int:
        """Largest integer code, 2^b − 1."""
        return 2**self.bits - 1

    def has_gamma(self, block_index: int) -> bool:
        """Whether decoder block ``block_index`` carries learnable group scales."""
        return self.gamma and block_index > self.start_layer

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> QuantSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "targets" in known:
            known["targets"] = tuple(known["targets"])
        return cls(**known)


@dataclass(frozen=True)
class CalibSpec:
    """How ``s`` and ``z`` are found."""

    method: str = "lwc"
    """'rtn' (group min/max) or 'lwc' (learnable weight clipping, trained block by block)."""
    epochs: int = 20
    """LWC passes over the calibration activations per block."""
    lr: float = 1e-2
    """AdamW learning rate of the clipping factors (OmniQuant's lwc_lr)."""

    def __post_init__(self) -> None:
        if self.method not in ("rtn", "lwc"):
            raise ValueError(f"method: must be 'rtn' or 'lwc', got {self.method!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs: must be >= 1, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr!r}")
