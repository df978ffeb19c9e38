"""The embedded tiny base: a LLaVA-1.5-shaped model built from scratch offline and saved in llava-hf format.

How it works
------------
`build_embedded_base` runs six phases and times each one:

1. **Tokenizer** (`qslaw.embedded.base.tokenizer`): byte-level BPE of `spec.vocab_size` ids trained on the
   corpus + captions, ids 0..3 = `<unk> <s> </s> <image>`, pad = unk, vicuna_v1 chat template.
2. **LM** (`qslaw.embedded.base.pretrain`): a randomly initialised `LlamaForCausalLM` (untied lm_head, as in
   LLaMA, RoPE base `rope_theta`) into which `qslaw.embedded.base.circuits` first writes an induction (copy) circuit
   and an option-letter lookup circuit (`lm_circuits`; gradient descent does not find them in this budget),
   then trained on the corpus with `lm_synthetic_share` of each batch repeated-token / lookup rows, the
   circuits held fixed by gradient masks, early-stopped on validation perplexity. The build report records
   the circuit probes (`repeat_top1`, `lookup`, `option_boost`) at init and after pretraining.
3. **Tower** (`qslaw.embedded.base.contrastive`): a tiny `CLIPVisionModel` and LLaVA's 2-layer GELU projector
   are created inside `LlavaForConditionalGeneration`, the pretrained LM weights are copied in
   (`LlamaForCausalLM.model.* → model.language_model.*`, `lm_head.* → lm_head.*`), and the tower is
   pretrained CLIP-style (InfoNCE) against the frozen LM's pooled states of the captions; optionally (off by
   default) for ``tower_cell_steps`` more with a grid term added (`qslaw.embedded.base.grounding`): the patch states the
   projector reads learn which cell they lie in.
4. **Projector** (`qslaw.embedded.base.caption`): LLaVA stage-1 alignment, captioning with tower and LM frozen;
   optionally (``caption_word_weight`` > 0) with a word term: each object's patch tokens are drawn towards the
   embeddings of the words that name its colour, shape and cell.
5. **Visual instruction tuning** (`qslaw.embedded.base.instruct`, off by default: ``instruct_max_steps: 0``): the
   projector and the LM's attention learn to answer short questions about the caption pictures (the world's
   ``instruct.json``), as LLaVA-1.5's base was instruction-tuned before anyone fine-tunes it on ScienceQA;
   compiled circuits protected. Skipped without instruction records or with 0 steps (its module says why it is
   off).
6. **Save**: `save_pretrained` (safetensors) of the model, a `LlavaProcessor`, and `build_report.json`,
   written into a hidden sibling directory that is renamed onto `out_dir` only when complete.

Shapes (defaults): text hidden `d = 256`, 4 heads of 64, MLP 512, 4 layers; image `64×64` cut into
`8×8` patches → `(64/8)² = 64` patch tokens + CLS = 65 CLIP positions. With
`vision_feature_select_strategy="default"` LLaVA drops CLS, so the projector maps `(B, 64, d_vis)` →
`(B, 64, d)` and the prompt must hold exactly 64 `<image>` ids; the processor gets
`num_additional_image_tokens=1` (the CLS) and subtracts it again for "default", so its expansion
matches the model by construction (`"full"` keeps CLS: 65 ids). `vision_feature_layer=-2` as in
LLaVA-1.5: the contrastive loss trains the tower through its CLS output, whose last layer reads the
patch states of layer -2, so those are the informative ones (the last layer's patch outputs are not
trained by anything).

Quantization constraint: every Llama decoder linear has `in_features` ∈ {hidden (q, k, v, gate, up),
heads·head_dim = hidden (o), intermediate (down)}; all must be multiples of `spec.group_size` (128)
so group-wise quantization tiles each row exactly. `EmbeddedModelSpec.__post_init__` checks it.

Images go through `CLIPImageProcessorPil` (the PIL backend: no torchvision needed) with CLIP's
resize-short-side + centre-crop to `image_size` and CLIP's mean/std, i.e. LLaVA's "square" mode.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers
from PIL import Image
from torch import nn
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from qslaw.config import Params, build
from qslaw.embedded.base.caption import (
    CaptionResult,
    CaptionTrainConfig,
    WordTargets,
    align_projector,
    encode_pairs,
    split_pairs,
)
from qslaw.embedded.base.circuits import (
    SyntheticRows,
    content_token_ids,
    install_circuits,
    layout_for,
    lookup_accuracy,
    option_boost,
    protect,
    repeat_top1,
)
from qslaw.embedded.base.contrastive import ContrastiveResult, ContrastiveTrainConfig, pretrain_tower
from qslaw.embedded.base.grounding import cell_targets, patch_cells, word_targets
from qslaw.embedded.base.instruct import InstructResult, InstructTrainConfig, encode_records, instruct_tune
from qslaw.embedded.base.pretrain import LMTrainConfig, pretrain_lm, timed, torch_threads
from qslaw.embedded.base.tokenizer import CHAT_TEMPLATE, IMAGE, train_tokenizer
from qslaw.embedded.world.scenes import GRID, parse_caption
from qslaw.fsutil import atomic_dir

REPORT_NAME = "build_report.json"
_POSITIVE_FLOATS = ("rope_theta", "lm_lr", "tower_lr", "caption_lr", "instruct_lr")
_NON_NEGATIVE_FLOATS = ("tower_cell_weight", "caption_word_weight")
_FRACTIONS = ("lm_synthetic_share", "lm_min_delta", "tower_min_delta", "caption_min_delta", "instruct_min_delta")
_NON_NEGATIVE = ("seed", "tower_cell_steps", "lm_warmup_steps", "caption_warmup_steps", "caption_holdout",
                 "instruct_max_steps", "instruct_text_rows", "instruct_warmup_steps")
_BOOLS = ("lm_circuits",)
_NOT_INTS = (("vision_feature_select_strategy", "vision_feature_layer") + _POSITIVE_FLOATS + _NON_NEGATIVE_FLOATS
             + _FRACTIONS + _BOOLS)


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Sizes and training budget of the embedded base.

    params.yaml's embedded spec (384 LM steps, 150 tower steps, 300 caption steps) builds in 257-271 s on the
    2-core machine from the default world (LM 133-148 s, tower 22 s, projector 94-97 s; 2026-12-03). With 400
    caption steps it built in 199-254 s on 2026-11-28 (LM 99-121 s, tower 15-19 s, projector 81-109 s) and in
    274-512 s on 2026-12-03: the machine's speed moves the build more than the budget does. `lm_max_steps` is the
    lever, and the one that costs most: the LM memorises the corpus facts only late (4-way fact recognition ≈ 29 %
    at 320 steps, 70 % at 480, 86-96 % at 640; 352 steps: validation perplexity 3.53 against 3.40 at 384 on world
    seed 0, and NO 67.7 against 82.9 after the fp LoRA fine-tune).
    """

    seed: int = 0
    """Seed of every random choice (init, data order, splits)."""
    vocab_size: int = 2048
    """BPE vocabulary size, specials and `<image>` included."""
    hidden_size: int = 256
    """LM width; in_features of q, k, v, gate, up (and of o, = heads × head_dim)."""
    intermediate_size: int = 512
    """LM MLP width; in_features of down_proj."""
    num_hidden_layers: int = 4
    """LM decoder blocks."""
    num_attention_heads: int = 4
    """LM attention heads (no GQA); head_dim = hidden_size / heads."""
    max_position_embeddings: int = 1024
    """Longest sequence the LM is configured for (RoPE has no learned positions)."""
    rope_theta: float = 1e6
    """RoPE base; 10⁶ keeps the slow half of each head's pairs position-invariant over a prompt (the compiled
    match heads use them)."""
    lm_circuits: bool = True
    """Write the copy and option-letter lookup circuits into the LM's init (`qslaw.embedded.base.circuits`); needs
    >= 3 layers, >= 2 heads and head_dim >= 32."""
    lm_synthetic_share: float = 0.125
    """Share of each LM batch replaced by repeated-token and option-lookup rows (`SyntheticRows`)."""
    group_size: int = 128
    """Quantization group size every decoder linear's in_features must be a multiple of."""
    image_size: int = 64
    """Square input resolution of the vision tower, in pixels."""
    patch_size: int = 8
    """CLIP patch side; (image_size / patch_size)² patch tokens."""
    vision_hidden_size: int = 128
    """CLIP tower width (the projector's input width)."""
    vision_intermediate_size: int = 512
    """CLIP MLP width."""
    vision_num_layers: int = 2
    """CLIP encoder layers."""
    vision_num_heads: int = 2
    """CLIP attention heads."""
    vision_feature_layer: int = -2
    """CLIP hidden state fed to the projector (-2 as in LLaVA-1.5: the input of the last layer)."""
    vision_feature_select_strategy: str = "default"
    """'default' drops the CLS token, 'full' keeps it."""
    lm_max_steps: int = 640
    """LM pretraining step budget (also the cosine horizon)."""
    lm_batch_size: int = 8
    """LM chunks per step."""
    lm_seq_len: int = 256
    """LM chunk length in tokens, bos included."""
    lm_lr: float = 3e-3
    """LM peak learning rate."""
    lm_warmup_steps: int = 30
    """LM linear warm-up steps."""
    lm_eval_every: int = 40
    """Steps between validation-perplexity evaluations."""
    lm_patience: int = 3
    """Evaluations without relative improvement > lm_min_delta before the LM stops."""
    lm_min_delta: float = 0.0
    """Relative validation-perplexity improvement that counts as progress (0: any; memorising facts is slow)."""
    lm_val_chunks: int = 32
    """Validation chunks per evaluation (caps its cost)."""
    tower_max_steps: int = 150
    """Contrastive tower pretraining step budget (also the cosine horizon)."""
    tower_batch_size: int = 64
    """Image-caption pairs per contrastive step (batch negatives + 1)."""
    tower_lr: float = 2e-3
    """Peak learning rate of the tower's contrastive pretraining."""
    tower_eval_every: int = 50
    """Steps between held-out contrastive evaluations."""
    tower_patience: int = 3
    """Evaluations without relative improvement > tower_min_delta before the tower stops."""
    tower_min_delta: float = 0.0
    """Relative held-out contrastive-loss improvement that counts as progress."""
    tower_cell_steps: int = 0
    """Steps of a second tower phase, after the InfoNCE one, with the patch grid-cell term added
    (`qslaw.embedded.base.grounding`; 0, the default, = none: README "Grid grounding" has the measurements)."""
    tower_cell_weight: float = 1.0
    """Weight of the grid-cell term in that phase (0 = no such phase)."""
    caption_max_steps: int = 300
    """Projector caption-alignment step budget (also the cosine horizon)."""
    caption_batch_size: int = 16
    """Image-caption pairs per step."""
    caption_lr: float = 2e-3
    """Peak learning rate of the projector."""
    caption_warmup_steps: int = 10
    """Caption linear warm-up steps."""
    caption_eval_every: int = 100
    """Steps between held-out caption-loss evaluations."""
    caption_patience: int = 2
    """Evaluations without relative improvement > caption_min_delta before caption training stops."""
    caption_min_delta: float = 0.005
    """Relative held-out caption-loss improvement that counts as progress."""
    caption_word_weight: float = 0.0
    """Weight of the projector's patch-word term (`grounding`; 0, the default, = caption loss only);
    applies to captions in the embedded world's form, whose objects `scenes.parse_caption` reads."""
    caption_holdout: int = 128
    """Pairs (and instruction records) held out from the vision phases to measure retrieval, loss and accuracy."""
    instruct_max_steps: int = 0
    """Visual instruction tuning step budget (also the cosine horizon); 0 (the default) skips the phase."""
    instruct_batch_size: int = 16
    """Conversations per instruction-tuning step."""
    instruct_text_rows: int = 2
    """Corpus chunks per instruction-tuning step (LM loss, keeps the LM's text skills)."""
    instruct_text_len: int = 128
    """Tokens per corpus chunk of instruction tuning."""
    instruct_lr: float = 1e-3
    """Peak learning rate of instruction tuning (projector and LM attention)."""
    instruct_warmup_steps: int = 10
    """Instruction-tuning linear warm-up steps."""
    instruct_eval_every: int = 50
    """Steps between held-out answer evaluations."""
    instruct_patience: int = 2
    """Evaluations without relative improvement > instruct_min_delta before instruction tuning stops."""
    instruct_min_delta: float = 0.0
    """Relative held-out answer-loss improvement that counts as progress."""

    def __post_init__(self) -> None:
        self._check_types_and_signs()
        self._check_shapes()

    def _check_types_and_signs(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in _NOT_INTS and (not isinstance(value, int) or isinstance(value, bool)):
                _fail(f.name, f"must be an int, got {value!r}")
            if f.name not in _NOT_INTS + _NON_NEGATIVE and value <= 0:
                _fail(f.name, f"must be > 0, got {value}")
            if f.name in _NON_NEGATIVE and value < 0:
                _fail(f.name, f"must be >= 0, got {value}")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be true or false, got {getattr(self, name)!r}")
        for name in _POSITIVE_FLOATS:
            if not getattr(self, name) > 0:
                _fail(name, f"must be > 0, got {getattr(self, name)}")
        for name in _NON_NEGATIVE_FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                _fail(name, f"must be a finite number >= 0, got {value!r}")
        for name in _FRACTIONS:
            if not 0 <= getattr(self, name) < 1:
                _fail(name, f"must be in [0, 1), got {getattr(self, name)}")

    def _check_shapes(self) -> None:
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            _fail("num_attention_heads", f"must split hidden_size {self.hidden_size} into even head dims")
        for name, in_features in self.decoder_in_features().items():
            if in_features % self.group_size:
                field = "intermediate_size" if name == "down_proj" else "hidden_size"
                _fail(field, f"{name}.in_features = {in_features} is not a multiple of group_size {self.group_size}")
        if self.vision_hidden_size % self.vision_num_heads:
            _fail("vision_num_heads", f"must divide vision_hidden_size {self.vision_hidden_size}")
        if self.image_size % self.patch_size:
            _fail("patch_size", f"must divide image_size {self.image_size}")
        strategy = self.vision_feature_select_strategy
        if strategy not in ("default", "full"):
            _fail("vision_feature_select_strategy", f"must be 'default' or 'full', got {strategy!r}")
        if not -self.vision_num_layers - 1 <= self.vision_feature_layer <= self.vision_num_layers:
            _fail("vision_feature_layer", f"must index one of {self.vision_num_layers + 1} CLIP hidden states")
        if self.vocab_size < 256 + 4:
            _fail("vocab_size", f"must hold the 256 byte symbols and 4 specials, got {self.vocab_size}")
        if self.lm_seq_len > self.max_position_embeddings:
            _fail("lm_seq_len", f"exceeds max_position_embeddings {self.max_position_embeddings}")
        if self.instruct_text_len > self.max_position_embeddings:
            _fail("instruct_text_len", f"exceeds max_position_embeddings {self.max_position_embeddings}")
        if self.lm_circuits:
            try:
                layout_for(self.hidden_size, self.num_attention_heads, self.num_hidden_layers)
            except ValueError as err:
                raise ValueError(f"{err} (or set lm_circuits: false)") from None

    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def num_image_tokens(self) -> int:
        """`<image>` ids per image in the prompt: patches, plus CLS under the 'full' strategy."""
        patches = (self.image_size // self.patch_size) ** 2
        return patches + (self.vision_feature_select_strategy == "full")

    def decoder_in_features(self) -> dict[str, int]:
        """in_features of each Llama decoder linear."""
        d = self.hidden_size
        attn_out = self.num_attention_heads * self.head_dim()
        return {"q_proj": d, "k_proj": d, "v_proj": d, "o_proj": attn_out, "gate_proj": d, "up_proj": d,
                "down_proj": self.intermediate_size}

    def lm_train_config(self) -> LMTrainConfig:
        return LMTrainConfig(self.lm_max_steps, self.lm_batch_size, self.lm_seq_len, self.lm_lr, self.lm_warmup_steps,
                             self.lm_eval_every, self.lm_patience, self.lm_min_delta, self.lm_val_chunks, self.seed,
                             self.lm_synthetic_share)

    def tower_train_config(self, grid_phase: bool = False) -> ContrastiveTrainConfig:
        """The InfoNCE phase's config, or (`grid_phase`) the second phase's: its steps, the grid term's weight."""
        steps = self.tower_cell_steps if grid_phase else self.tower_max_steps
        return ContrastiveTrainConfig(steps, self.tower_batch_size, self.tower_lr, self.tower_eval_every,
                                      self.tower_patience, self.tower_min_delta, self.seed,
                                      self.tower_cell_weight if grid_phase else 0.0, self.vision_feature_layer)

    def tower_grid_phase(self) -> bool:
        return self.tower_cell_steps > 0 and self.tower_cell_weight > 0

    def instruct_train_config(self) -> InstructTrainConfig:
        return InstructTrainConfig(self.instruct_max_steps, self.instruct_batch_size, self.instruct_text_rows,
                                   self.instruct_text_len, self.instruct_lr, self.instruct_warmup_steps,
                                   self.instruct_eval_every, self.instruct_patience, self.instruct_min_delta, self.seed)

    def caption_train_config(self) -> CaptionTrainConfig:
        return CaptionTrainConfig(self.caption_max_steps, self.caption_batch_size, self.caption_lr,
                                  self.caption_warmup_steps, self.caption_eval_every, self.caption_patience,
                                  self.caption_min_delta, self.seed, self.caption_word_weight)


def circuit_probes(lm: nn.Module, tokenizer: PreTrainedTokenizerFast) -> dict:
    """The LM's in-context copy and option-letter lookup accuracy (`qslaw.embedded.base.circuits` probes)."""
    was_training = lm.training
    lm.eval()
    report = {"repeat_top1": repeat_top1(lm, content_token_ids(tokenizer), tokenizer.bos_token_id),
              "lookup": lookup_accuracy(lm, tokenizer), "option_boost": option_boost(lm, tokenizer)}
    lm.train(was_training)
    return report


def _fail(name: str, message: str) -> None:
    raise ValueError(f"{name}: {message}")


def llama_config(spec: EmbeddedModelSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The text config: spec sizes, the tokenizer's vocabulary and special ids, untied lm_head."""
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads, max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
    )


def clip_config(spec: EmbeddedModelSpec) -> CLIPVisionConfig:
    """The vision config: a tiny CLIP ViT at `image_size` with `patch_size` patches."""
    return CLIPVisionConfig(
        hidden_size=spec.vision_hidden_size, intermediate_size=spec.vision_intermediate_size,
        num_hidden_layers=spec.vision_num_layers, num_attention_heads=spec.vision_num_heads,
        image_size=spec.image_size, patch_size=spec.patch_size, projection_dim=spec.vision_hidden_size,
    )


def llava_config(spec: EmbeddedModelSpec, text: LlamaConfig, image_token_id: int) -> LlavaConfig:
    return LlavaConfig(
        vision_config=clip_config(spec), text_config=text, image_token_index=image_token_id,
        image_seq_length=spec.num_image_tokens(), vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy, projector_hidden_act="gelu",
    )


def make_processor(tokenizer: PreTrainedTokenizerFast, spec: EmbeddedModelSpec) -> LlavaProcessor:
    """A LlavaProcessor whose `<image>` expansion equals `spec.num_image_tokens()` (CLS counted, then dropped)."""
    size = spec.image_size
    images = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return LlavaProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=spec.patch_size,
        vision_feature_select_strategy=spec.vision_feature_select_strategy, chat_template=CHAT_TEMPLATE,
        image_token=IMAGE, num_additional_image_tokens=1,
    )


def assemble_llava(lm: LlamaForCausalLM, spec: EmbeddedModelSpec, image_token_id: int) -> LlavaForConditionalGeneration:
    """A LLaVA with a fresh (seeded) vision tower and projector and a copy of `lm`'s weights."""
    torch.manual_seed(spec.seed + 1)
    model = LlavaForConditionalGeneration(llava_config(spec, lm.config, image_token_id))
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(lm.config, key))
    return model.eval()


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_counts(model: LlavaForConditionalGeneration) -> dict[str, int]:
    """Parameters per component; `language_model` holds embeddings + decoder + final norm, `lm_head` is separate."""
    parts = {"vision_tower": count(model.model.vision_tower), "projector": count(model.model.multi_modal_projector),
             "language_model": count(model.model.language_model), "lm_head": count(model.lm_head)}
    return {**parts, "total": count(model)}


def grid_cells(processor: LlavaProcessor, pixels: torch.Tensor, spec: EmbeddedModelSpec) -> torch.Tensor:
    """Each patch's grid cell (`grounding.patch_cells`) on the world's white canvas: `(N, patches)`."""
    images = processor.image_processor
    white = [(1.0 - m) / s for m, s in zip(images.image_mean, images.image_std, strict=True)]
    return patch_cells(pixels, white, spec.patch_size, GRID)


def grounding_words(model: LlavaForConditionalGeneration, processor: LlavaProcessor, cells: torch.Tensor,
                    captions: Sequence[str], spec: EmbeddedModelSpec) -> WordTargets | None:
    """The projector's word targets from the captions' objects, or None when no caption names one."""
    scenes = [parse_caption(caption) for caption in captions]
    if not any(scene.objects for scene in scenes):
        return None
    objects = [{o.cell: (o.color, o.shape, *o.position.split()) for o in scene.objects} for scene in scenes]
    dims = (layout_for(spec.hidden_size, spec.num_attention_heads, spec.num_hidden_layers).dims("T")
            if spec.lm_circuits else slice(0, spec.hidden_size))
    embedding = model.model.language_model.embed_tokens.weight.detach()[:, dims]
    if spec.vision_feature_select_strategy == "full":  # the projected tokens start with the CLS
        cells = torch.cat([torch.full((len(cells), 1), -1, dtype=cells.dtype), cells], 1)
    targets, mask = word_targets(cells, objects, processor.tokenizer, embedding)
    return WordTargets(targets, mask, dims)


def pretrain_vision(model: LlavaForConditionalGeneration, processor: LlavaProcessor,
                    pairs: Sequence[tuple[Image.Image, str]], spec: EmbeddedModelSpec, progress: bool = True,
                    ) -> tuple[tuple[ContrastiveResult, ContrastiveResult | None, CaptionResult], dict[str, float]]:
    """Contrastive tower pretraining, its grid phase, then projector alignment, on one held-out split; results
    (the grid phase's None when off) and wall times. The grid terms are `qslaw.embedded.base.grounding`'s."""
    pad_id = processor.tokenizer.pad_token_id
    (data, split), t_encode = timed(lambda: (encode_pairs(processor, pairs),
                                             split_pairs(len(pairs), spec.caption_holdout, spec.seed)))
    grounded = spec.tower_grid_phase() or spec.caption_word_weight > 0
    cells = grid_cells(processor, data.pixel_values, spec) if grounded else None
    tower_args = (model.model.vision_tower, model.model.language_model, data.pixel_values, data.caption_ids, pad_id,
                  split)
    tower, t_tower = timed(pretrain_tower, *tower_args, spec.tower_train_config(), progress)
    times = {"encode_pairs": t_encode, "tower_pretrain": t_tower}
    grid = None
    if spec.tower_grid_phase():
        grid, times["tower_grid"] = timed(pretrain_tower, *tower_args, spec.tower_train_config(grid_phase=True),
                                          progress, cell_targets(cells, GRID))
    words = (grounding_words(model, processor, cells, [caption for _, caption in pairs], spec)
             if spec.caption_word_weight else None)
    caption, times["projector_align"] = timed(align_projector, model, data, split, pad_id,
                                              spec.caption_train_config(), progress, words)
    return (tower, grid, caption), times


def tune_instructions(model: LlavaForConditionalGeneration, processor: LlavaProcessor,
                      records: Sequence[tuple[Image.Image, Sequence[tuple[str, str]]]], corpus: list[str],
                      spec: EmbeddedModelSpec, progress: bool = True) -> tuple[InstructResult, dict[str, float]]:
    """Visual instruction tuning (`instruct`), compiled circuits protected; result and wall times."""
    tokenizer = processor.tokenizer
    data, t_encode = timed(encode_records, processor, records)
    split = split_pairs(len(records), spec.caption_holdout, spec.seed)

    def hooks(m: LlavaForConditionalGeneration) -> list:
        if not spec.lm_circuits:
            return []
        lay = layout_for(spec.hidden_size, spec.num_attention_heads, spec.num_hidden_layers)
        lm = SimpleNamespace(model=m.model.language_model, lm_head=m.lm_head)
        return protect(lm, lay, tokenizer)

    result, t_tune = timed(instruct_tune, model, data, split, corpus, tokenizer, spec.instruct_train_config(),
                           progress, hooks)
    return result, {"encode_instructions": t_encode, "instruct_tune": t_tune}


def build_embedded_base(
    out_dir: Path,
    corpus_train: list[str],
    corpus_validation: list[str],
    image_captions: Sequence[tuple[Image.Image, str]],
    spec: EmbeddedModelSpec,
    progress: bool = True,
    instructions: Sequence[tuple[Image.Image, Sequence[tuple[str, str]]]] = (),
) -> dict:
    """Train tokenizer, LM and vision side on the given data; save a llava-hf directory; return the build report.

    `instructions` (image, [(question, answer), ...]) records feed the visual instruction tuning; without them,
    or with ``spec.instruct_max_steps == 0``, the phase is skipped (report ``instruct: null``)."""
    out_dir, start, cpu_start = Path(out_dir), time.perf_counter(), time.process_time()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with torch_threads():
        torch.manual_seed(spec.seed)
        texts = list(corpus_train) + [caption for _, caption in image_captions]
        tokenizer, t_tok = timed(train_tokenizer, texts, spec.vocab_size)
        lm = LlamaForCausalLM(llama_config(spec, tokenizer))
        circuits, hooks = {}, []
        if spec.lm_circuits:
            layout = install_circuits(lm, tokenizer, spec.seed)
            circuits["init"] = circuit_probes(lm, tokenizer)
            hooks = protect(lm, layout, tokenizer)
        synthetic = SyntheticRows(tokenizer, corpus_train, spec.seed).row if spec.lm_synthetic_share else None
        lm_result, t_lm = timed(pretrain_lm, lm, tokenizer, corpus_train, corpus_validation,
                                spec.lm_train_config(), progress, synthetic)
        for hook in hooks:
            hook.remove()
        if spec.lm_circuits:
            circuits["pretrained"] = circuit_probes(lm, tokenizer)
        processor = make_processor(tokenizer, spec)
        model = assemble_llava(lm, spec, tokenizer.convert_tokens_to_ids(IMAGE))
        (tower_result, grid_result, caption_result), t_vision = pretrain_vision(model, processor, image_captions,
                                                                                spec, progress)
        instruct = None
        if instructions and spec.instruct_max_steps:
            instruct, t_instruct = tune_instructions(model, processor, instructions, corpus_train, spec, progress)
            t_vision.update(t_instruct)
            if spec.lm_circuits:
                circuits["instructed"] = circuit_probes(model, tokenizer)
        threads = torch.get_num_threads()
    report = {
        "spec": asdict(spec), "vocab_size": len(tokenizer), "image_token_index": model.config.image_token_index,
        "num_image_tokens": spec.num_image_tokens(), "params": param_counts(model),
        "lm": {**asdict(lm_result), "final_val_ppl": lm_result.best_val_ppl}, "circuits": circuits,
        "tower": asdict(tower_result), "tower_grid": asdict(grid_result) if grid_result is not None else None,
        "caption": asdict(caption_result),
        "instruct": asdict(instruct) if instruct is not None else None, "threads": threads,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "wall_s": {"tokenizer": t_tok, "lm_pretrain": t_lm, **t_vision},
    }
    save_start = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        report["wall_s"]["save"] = time.perf_counter() - save_start
        report["wall_s"]["total"] = time.perf_counter() - start
        report["cpu_s_total"] = time.process_time() - cpu_start  # ≈ threads × wall on an idle machine
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def model_spec(params: Params) -> EmbeddedModelSpec:
    """The pipeline params' ``base.embedded`` section as an :class:`EmbeddedModelSpec`, checked as strictly as
    any other section (``ValueError`` naming ``base.embedded.<key>``)."""
    return build(EmbeddedModelSpec, params.base.embedded, "base.embedded")
