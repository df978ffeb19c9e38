"""One tiny DeepSpeed training run, launched with one or several ranks by the multi-rank test.

    python ranks_worker.py OUT_JSON                                # one rank
    torchrun --nproc_per_node 2 ranks_worker.py OUT_JSON           # two ranks (gloo on CPU)

γ + projector on a 4-bit tiny LLaVA, 16 equal-length samples, global batch 8, 2 epochs; rank 0 writes the
loss history and a digest of the trained tensors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import tiny_llava, tiny_llava_batch  # noqa: E402

from qslaw.model.surgery import quantize_model, set_trainable  # noqa: E402
from qslaw.quant.spec import QuantSpec  # noqa: E402
from qslaw.train.encode import collate  # noqa: E402
from qslaw.train.loop import LoopSpec, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    torch.manual_seed(0)
    model = quantize_model(tiny_llava(), QuantSpec(group_size=32, start_layer=-1, gamma_mode="packed"))
    set_trainable(model, ["gamma", "projector"])
    batch = tiny_llava_batch(batch=16, seed=2)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(16)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    history = train(model, samples, lambda s: collate(s, 0), [{"params": trainable, "lr": 1e-2}],
                    LoopSpec(epochs=2, batch_size=8, seed=1, desc="ranks-test"),
                    ROOT / "infra" / "deepspeed" / "zero2.json", progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        digest = {n: float(p.detach().double().sum()) for n, p in model.named_parameters() if p.requires_grad}
        Path(sys.argv[1]).write_text(json.dumps({"history": history, "digest": digest,
                                                 "world_size": int(os.environ.get("WORLD_SIZE", "1"))}))
    if torch.distributed.is_initialized():  # leave together: a rank that exits with its gloo threads alive aborts
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
