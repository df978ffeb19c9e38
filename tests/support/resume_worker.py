"""A tiny checkpointed training run in its own process, for the resume tests (killed and rerun by them).

    python resume_worker.py CHECKPOINT_DIR HISTORY_JSON [EVERY]

LoRA (dropout 0.1, so the RNG state matters) + projector on a 4-bit tiny LLaVA, 2 epochs of 16 samples in
batches of 4 = 8 steps; writes the loss history and a digest of the trained tensors as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import tiny_llava, tiny_llava_batch  # noqa: E402

from qslaw.model.lora import add_lora  # noqa: E402
from qslaw.model.surgery import quantize_model, set_trainable  # noqa: E402
from qslaw.quant.spec import QuantSpec  # noqa: E402
from qslaw.train.checkpoint import CheckpointSpec  # noqa: E402
from qslaw.train.encode import collate  # noqa: E402
from qslaw.train.loop import LoopSpec, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def run_training(ckpt: Path, every: int = 2) -> dict:
    """Train (resuming from ``ckpt`` when it holds this run's checkpoint); the history and a weight digest."""
    torch.manual_seed(0)
    spec = QuantSpec(group_size=32, start_layer=-1, gamma_mode="packed", gamma=False)
    model = add_lora(quantize_model(tiny_llava(), spec), spec, r=4, alpha=8, dropout=0.1)
    set_trainable(model, ["lora", "projector"])
    batch = tiny_llava_batch(batch=16, seed=1)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(16)]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if "lora_" in n], "lr": 5e-3},
              {"params": [p for n, p in named if "lora_" not in n], "lr": 1e-3}]
    history = train(model, samples, lambda s: collate(s, 0), groups,
                    LoopSpec(epochs=2, batch_size=4, seed=3, desc="resume-test"),
                    ROOT / "infra" / "deepspeed" / "zero2.json", progress=False,
                    checkpoint=CheckpointSpec(ckpt, every, fingerprint="resume-test"))
    digest = {n: float(p.detach().double().sum()) for n, p in model.named_parameters() if p.requires_grad}
    return {"history": history, "digest": digest}


def main() -> None:
    ckpt, out = Path(sys.argv[1]), Path(sys.argv[2])
    result = run_training(ckpt, int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
