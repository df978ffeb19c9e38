"""Typed pipeline parameters: params.yaml → one frozen dataclass per section, validated on load.

How it works
------------
``params.yaml`` has one section per DVC stage (plus ``world``, the embedded world shared by ``base`` and
``prepare``, and ``train``, shared by the training stages). :func:`load_params` reads it into
:class:`Params`, a record of section dataclasses. Loading is strict and fails before any compute:

* an unknown key or a missing section names it (``section.key``); keys left out take the dataclass default,
  and a test keeps params.yaml listing every field;
* a value of the wrong type (by the dataclass annotation: int, float, str, bool, nested dataclass) names
  ``section.key`` and the value;
* range checks live in each dataclass's ``__post_init__`` and raise ``ValueError("key: ...")``; the loader
  prefixes the section, so every message reads ``quantize.bits: must be one of ...``.

Library specs (``QuantSpec``, ``CalibSpec``) are derived from the sections by methods, so ``qslaw/`` never
sees a stage config. The embedded default's two sections (``world``, ``base.embedded``) stay plain mappings
here and are typed and checked by the embedded package (``world_spec``, ``model_spec``), which the stages
that use them call when they load their params: the method library never imports the embedded demo.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from qslaw.quant.spec import CalibSpec, QuantSpec
from qslaw.train.methods import METHODS as TRAIN_METHODS
from qslaw.train.methods import Method, get_method

METHODS = tuple(TRAIN_METHODS)
"""Adaptation methods, each end to end through the same DAG (see :mod:`qslaw.train.methods`)."""


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{key}: {message}")


@dataclass(frozen=True)
class BaseParams:
    """Which base model the pipeline adapts."""

    model: str = "embedded"
    """'embedded' (built from the world), a local llava-hf directory, or a hub id."""
    revision: str = "main"
    """Hub revision (pin a commit hash for real runs); ignored for local directories."""
    embedded: dict = field(default_factory=dict)
    """Sizes and budget of the embedded base: the build knobs of :class:`qslaw.embedded.base.builder.
    EmbeddedModelSpec`, checked by :func:`qslaw.embedded.base.builder.model_spec` when the ``base`` stage loads them
    (this library never imports the embedded demo); DVC tracks the section as a whole."""

    def __post_init__(self) -> None:
        _check(bool(self.model.strip()), "model", "must be 'embedded', a local directory or a hub id")


@dataclass(frozen=True)
class PrepareParams:
    """Which data the pipeline uses and how it is rendered."""

    task_source: str = "embedded"
    """Task data: 'embedded' (the synthetic world), a directory of ScienceQA-schema parquet files, a hub id
    (derek-thomas/ScienceQA, online only), or LLaVA JSONs as a path with '{split}'
    (.../llava_{split}_QCM-LEA.json, with task_metadata)."""
    task_metadata: str = ""
    """ScienceQA's problems.json, for a LLaVA JSON task source (subject, grade, ... by pid)."""
    task_image_dir: str = ""
    """Folder the LLaVA JSON's image paths are relative to ('' = images/ beside the JSON)."""
    text_source: str = "embedded"
    """Text corpus: 'embedded', a directory of WikiText parquet or raw text files, or 'name:config' on the hub
    (Salesforce/wikitext:wikitext-2-raw-v1, online only)."""
    caption_source: str = "embedded"
    """Image-caption pairs: 'embedded' or a LLaVA pretraining JSON (LCS-558K shape)."""
    caption_image_dir: str = ""
    """Folder the caption JSON's image paths are relative to ('' = images/ beside the JSON)."""
    eval_prompt: str = "qcm"
    """'qcm' (the training prompt, the model writes lecture, solution and answer) or 'qcm_letter'
    (LLaVA's single-prediction suffix asking for the letter only)."""

    def __post_init__(self) -> None:
        for key in ("task_source", "text_source", "caption_source"):
            _check(bool(getattr(self, key).strip()), key, "must be 'embedded', a local path or a hub id")
        _check(self.eval_prompt in ("qcm", "qcm_letter"), "eval_prompt",
               f"must be 'qcm' or 'qcm_letter', got {self.eval_prompt!r}")

    @property
    def uses_embedded(self) -> bool:
        return "embedded" in (self.task_source, self.text_source, self.caption_source)


@dataclass(frozen=True)
class ValidateParams:
    """Data checks run before any compute."""

    max_image_side: int = 4096
    """Largest allowed image width or height, in pixels."""
    max_image_bytes: int = 10_000_000
    """Largest allowed encoded image, in bytes."""
    balance_tolerance: float = 0.15
    """Allowed deviation of each answer position's share from uniform before a warning."""

    def __post_init__(self) -> None:
        _check(self.max_image_side > 0, "max_image_side", f"must be > 0, got {self.max_image_side}")
        _check(self.max_image_bytes > 0, "max_image_bytes", f"must be > 0, got {self.max_image_bytes}")
        _check(0 < self.balance_tolerance < 1, "balance_tolerance", f"must be in (0, 1), got {self.balance_tolerance}")


@dataclass(frozen=True)
class QuantizeParams:
    """Weight quantization of the language model."""

    bits: int = 4
    """Code width: 2, 3, 4 or 8."""
    group_size: int = 128
    """Input columns per (s, z) group."""
    start_layer: int = 0
    """Decoder blocks with index > start_layer get γ (-1: all)."""
    gamma_mode: str = "packed"
    """'requant' (reference-exact) or 'packed' (codes only)."""
    method: str = "lwc"
    """Calibration of s, z: 'rtn' or 'lwc'."""
    calib_samples: int = 32
    """Calibration sequences (task multimodal samples and text chunks, half each)."""
    calib_length: int = 128
    """Token length of calibration text chunks."""
    lwc_epochs: int = 10
    """LWC passes per block."""
    lwc_lr: float = 1e-2
    """LWC learning rate."""

    def __post_init__(self) -> None:
        self.quant_spec()
        _check(self.lwc_epochs >= 1, "lwc_epochs", f"must be >= 1, got {self.lwc_epochs}")
        _check(self.lwc_lr > 0, "lwc_lr", f"must be > 0, got {self.lwc_lr}")
        self.calib_spec()
        _check(self.calib_samples >= 2, "calib_samples", f"must be >= 2, got {self.calib_samples}")
        _check(self.calib_length >= 8, "calib_length", f"must be >= 8, got {self.calib_length}")

    def quant_spec(self) -> QuantSpec:
        return QuantSpec(bits=self.bits, group_size=self.group_size, start_layer=self.start_layer,
                         gamma_mode=self.gamma_mode)

    def calib_spec(self) -> CalibSpec:
        return CalibSpec(method=self.method, epochs=self.lwc_epochs, lr=self.lwc_lr)


@dataclass(frozen=True)
class TrainParams:
    """Shared by the training stages."""

    method: str = "qslaw"
    """Adaptation method for the whole DAG."""
    seed: int = 0
    """Seed of initialisation, data order and dropout."""
    precision: str = "fp32"
    """'fp32' or 'bf16' (bf16 autocast-free DeepSpeed bf16; the released recipe's choice on GPUs)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage (0-2 here; 3 per the docs' compatibility table)."""
    checkpoint_every: int = 50
    """Optimizer steps between training checkpoints (0 = none); a killed stage rerun resumes from the last."""
    checkpoint_dir: str = "checkpoints"
    """Root of the training checkpoints (outside the DVC outs, which DVC deletes before a stage runs)."""

    def __post_init__(self) -> None:
        _check(self.method in METHODS, "method", f"must be one of {METHODS}, got {self.method!r}")
        _check(self.precision in ("fp32", "bf16"), "precision", f"'fp32' or 'bf16', got {self.precision!r}")
        _check(self.zero_stage in (0, 1, 2, 3), "zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}")
        _check(self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        _check(bool(self.checkpoint_dir.strip()), "checkpoint_dir", "must be a directory path")

    def method_spec(self) -> Method:
        return get_method(self.method)


def _check_optim(p: object, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = getattr(p, key)
        _check(value > 0, key, f"must be > 0, got {value}")


@dataclass(frozen=True)
class WarmupParams:
    """Multimodal warmup: projector + γ on image-caption and task image samples."""

    epochs: int = 1
    """Passes over the warmup data."""
    lr: float = 2e-3
    """Peak learning rate (the released warmup uses 2e-3)."""
    batch_size: int = 16
    """Samples per optimizer step."""
    max_length: int = 256
    """Token limit per sample (longer ones are truncated)."""
    caption_samples: int = 1000
    """Image-caption pairs used."""
    task_image_samples: int = 1000
    """Task samples with images used (a deterministic prefix, as released)."""

    def __post_init__(self) -> None:
        _check_optim(self, ("epochs", "lr", "batch_size", "max_length"))
        _check(self.caption_samples + self.task_image_samples > 0, "caption_samples", "no warmup data selected")


@dataclass(frozen=True)
class HybridParams:
    """Hybrid training: γ + projector on a text:multimodal mix, absorb, then LoRA (+ projector) on task data."""

    text_ratio: float = 1.0
    """Text chunks per multimodal sample in phase 1 (1.0 = the released 1:1 mix)."""
    mix_schedule: str = "fixed"
    """'fixed' (the released shuffle of the union: text share ≈ constant) or 'linear' (the text share of
    each batch moves linearly from ``text_ratio`` to ``text_ratio_end`` over the phase's steps)."""
    text_ratio_end: float = 1.0
    """Text:multimodal ratio at the last step of a 'linear' schedule (ignored when 'fixed')."""
    chunk_length: int = 128
    """Tokens per text chunk (loss on every token)."""
    gamma_epochs: int = 1
    """Passes over the phase-1 mix."""
    gamma_lr: float = 2e-3
    """Phase-1 peak learning rate."""
    multimodal_samples: int = 600
    """Task multimodal samples in the phase-1 mix (text chunks follow text_ratio)."""
    tune_text_ratio: float = 0.0
    """Text chunks per task training conversation mixed into phase 2 (0 = the released recipe: phase 2 sees
    task data only). The chunks are the corpus chunks after those phase 1 used."""
    lora_r: int = 64
    """LoRA rank (released ScienceQA recipe: 64)."""
    lora_alpha: int = 16
    """LoRA alpha (released: 16)."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    lora_epochs: int = 3
    """Passes over the task training split in phase 2."""
    lora_lr: float = 2e-4
    """Phase-2 peak learning rate of the adapters."""
    projector_lr: float = 2e-5
    """Phase-2 learning rate of the projector."""
    full_ft_lr: float = 2e-5
    """Phase-2 learning rate of every LLM weight (method ``full_ft`` only; LLaVA's full fine-tune uses 2e-5)."""
    batch_size: int = 16
    """Samples per optimizer step, both phases."""
    max_length: int = 256
    """Token limit per task sample."""

    def __post_init__(self) -> None:
        _check_optim(self, ("chunk_length", "gamma_epochs", "gamma_lr", "lora_r", "lora_alpha", "lora_epochs",
                            "lora_lr", "projector_lr", "full_ft_lr", "batch_size", "max_length"))
        _check(self.text_ratio >= 0, "text_ratio", f"must be >= 0, got {self.text_ratio}")
        _check(self.tune_text_ratio >= 0, "tune_text_ratio", f"must be >= 0, got {self.tune_text_ratio}")
        _check(self.text_ratio_end >= 0, "text_ratio_end", f"must be >= 0, got {self.text_ratio_end}")
        _check(self.mix_schedule in ("fixed", "linear"), "mix_schedule",
               f"must be 'fixed' or 'linear', got {self.mix_schedule!r}")
        _check(self.multimodal_samples >= 1, "multimodal_samples", f"must be >= 1, got {self.multimodal_samples}")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")


@dataclass(frozen=True)
class EvaluateParams:
    """The pinned ScienceQA-style protocol."""

    max_new_tokens: int = 96
    """Greedy decoding budget per answer."""
    batch_size: int = 16
    """Questions per generate call."""
    split: str = "test"
    """Task and corpus split scored: 'test' for reported figures, 'validation' for every choice made on the
    way there (learning rates, steps, recipe variants), so no choice ever looks at test."""
    limit: int = 0
    """Evaluate only the first N questions of the split (0 = all)."""
    ppl_window: int = 128
    """Non-overlapping window length of the perplexity protocol."""

    def __post_init__(self) -> None:
        _check_optim(self, ("max_new_tokens", "batch_size", "ppl_window"))
        _check(self.limit >= 0, "limit", f"must be >= 0, got {self.limit}")
        _check(self.split in ("test", "validation"), "split", f"must be 'test' or 'validation', got {self.split!r}")


@dataclass(frozen=True)
class ExportParams:
    """The exported artifact."""

    model_name: str = ""
    """Registered model name; empty means 'qslaw-<base name>'."""
    check_questions: int = 16
    """Test questions re-answered by the reloaded bundle; answers must equal the evaluated model's."""
    merged_eval_questions: int = 100
    """Test questions answered by the merged fp checkpoint and the packed model to measure the merge's
    accuracy change (0 = skip the merged checkpoint)."""

    def __post_init__(self) -> None:
        _check(" " not in self.model_name, "model_name", f"must contain no spaces, got {self.model_name!r}")
        _check(self.check_questions >= 1, "check_questions", f"must be >= 1, got {self.check_questions}")
        _check(self.merged_eval_questions >= 0, "merged_eval_questions",
               f"must be >= 0, got {self.merged_eval_questions}")


@dataclass(frozen=True)
class PromoteParams:
    """The registry's promotion gate (``steps.promote``; not a DVC stage)."""

    margin: float = 0.0
    """Avg accuracy must be ≥ the champion's + this margin (points)."""
    ppl_bound: float = 1.5
    """Perplexity must be ≤ the fp base's × this bound."""

    def __post_init__(self) -> None:
        _check(self.margin >= 0, "margin", f"must be >= 0, got {self.margin}")
        _check(self.ppl_bound >= 1, "ppl_bound", f"must be >= 1, got {self.ppl_bound}")


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    world: dict
    """The embedded world's seed and sizes (:class:`qslaw.embedded.world.WorldSpec`, checked by
    :func:`qslaw.embedded.world.generate.world_spec` when ``base`` or ``prepare`` loads them)."""
    base: BaseParams
    prepare: PrepareParams
    validate: ValidateParams
    quantize: QuantizeParams
    train: TrainParams
    warmup: WarmupParams
    hybrid: HybridParams
    evaluate: EvaluateParams
    export: ExportParams
    promote: PromoteParams


def _type_ok(value: object, annotation: object) -> bool:
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    if isinstance(annotation, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    return True


def build(cls: type, raw: object, key: str) -> object:
    """Build dataclass ``cls`` from a mapping, naming ``key.field`` in every error."""
    if not isinstance(raw, dict):
        raise ValueError(f"{key}: must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in raw.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            value = build(annotation, value, f"{key}.{name}")
        elif annotation is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _type_ok(value, annotation):
            raise ValueError(f"{key}.{name}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{key}.{e}") from None


def parse_params(raw: object) -> Params:
    if not isinstance(raw, dict):
        raise ValueError("params: the file must hold a mapping of sections")
    missing = [f.name for f in fields(Params) if f.name not in raw]
    if missing:
        raise ValueError(f"{missing[0]}: missing section")
    hints = typing.get_type_hints(Params)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown section")
    return Params(**{name: section(hints[name], raw[name] or {}, name) for name in hints})


def section(cls: type, raw: object, key: str) -> object:
    """A section as its dataclass, or (a ``dict`` section, typed elsewhere) as a plain mapping."""
    if cls is dict:
        if not isinstance(raw, dict):
            raise ValueError(f"{key}: must be a mapping, got {type(raw).__name__}")
        return raw
    return build(cls, raw, key)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    with open(path) as f:
        return parse_params(yaml.safe_load(f))
