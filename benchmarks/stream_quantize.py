"""Benchmark: memory of the streamed quantize on a random llava-hf checkpoint written to disk (not a test).

Run::

    python -m benchmarks.stream_quantize [--shape 1b|7b|13b] [--method rtn|lwc] [--device cpu|cuda] [--out F]

How it works
------------
A random LLaVA with a Llama LM of the chosen shape (1b: TinyLlama's 2048 × 22 blocks, 5632 FFN, 4 KV heads;
7b / 13b: Llama-2's; tiny: a smoke test) and a small CLIP tower (768 × 12, 224 px, patch 16) is written in
float16 with ``save_pretrained(max_shard_size="2GB")`` (this parent holds it while writing: 14 GB at 7B). A
child process then runs :func:`qslaw.model.stream.streamed_quantize` (W4, group 128, packed codes) on
``--calib-samples`` calibration sequences of ``--calib-length`` tokens (half with an image) and reports its
peak RSS above the RSS after imports (``VmHWM`` − ``VmRSS``; not ``ru_maxrss``, which Linux carries over
from the parent across exec), the peak GPU memory when ``--device cuda``, the wall time, the checkpoint's
size on disk and the packed model's size. One JSON line per run goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SHAPES = {
    "tiny": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab_size": 32064},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32064},
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32064},
    "13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
            "num_key_value_heads": 40, "vocab_size": 32064},
}
IMAGE_SIZE, PATCH = 224, 16
IMAGE_TOKEN = 32000


def llava_config(shape: str) -> object:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=512)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def write_checkpoint(shape: str, out: Path) -> None:
    """A random float16 checkpoint in 2 GB shards, materialised one module at a time."""
    import torch
    from accelerate import init_empty_weights
    from transformers import LlavaForConditionalGeneration

    with init_empty_weights():
        model = LlavaForConditionalGeneration(llava_config(shape))
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            value = (torch.randn(p.shape, generator=gen) * 0.02 if p.dim() > 1 else torch.ones(p.shape))
            module._parameters[name] = torch.nn.Parameter(value.to(torch.float16), requires_grad=False)
    model.save_pretrained(out, max_shard_size="2GB")


CHILD = textwrap.dedent("""
    import json, sys, time
    import torch
    from transformers import LlavaForConditionalGeneration  # noqa: F401
    from qslaw.model.stream import streamed_quantize
    from qslaw.quant.spec import CalibSpec, QuantSpec

    def status_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])

    path, method, device, samples, length, epochs, image_tokens, vocab = sys.argv[1:9]
    samples, length, epochs, image_tokens, vocab = map(int, (samples, length, epochs, image_tokens, vocab))
    g = torch.Generator().manual_seed(0)
    batches = []
    for i in range(samples):
        text = torch.randint(1, vocab, (1, length), generator=g)
        if i % 2 == 0:
            ids = torch.cat([torch.full((1, image_tokens), {image}), text[:, : length - image_tokens]], dim=1)
            batches.append({{"input_ids": ids.to(device), "pixel_values": torch.randn(1, 3, {size}, {size},
                            generator=g).to(device, torch.float16)}})
        else:
            batches.append({{"input_ids": text.to(device)}})
    base = status_kib("VmRSS")
    start = time.perf_counter()
    spec = QuantSpec(bits=4, group_size=128, start_layer=0, gamma_mode="packed")
    model, report = streamed_quantize(path, spec, CalibSpec(method=method, epochs=epochs), batches, device=device)
    wall = time.perf_counter() - start
    packed = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    gpu = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    print(json.dumps({{"host_peak_above_imports_gib": (status_kib("VmHWM") - base) / 2**20,
                      "gpu_peak_gib": gpu / 2**30, "quantize_s": wall, "packed_model_gib": packed / 2**30}}))
""").format(image=IMAGE_TOKEN, size=IMAGE_SIZE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="1b")
    parser.add_argument("--method", choices=("rtn", "lwc"), default="rtn")
    parser.add_argument("--lwc-epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--calib-length", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=None, help="where the checkpoint is written (default: tmp)")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON row to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qslaw-stream-", dir=args.workdir) as tmp:
        ckpt = Path(tmp) / f"llava-{args.shape}-fp16"
        start = time.perf_counter()
        write_checkpoint(args.shape, ckpt)
        write_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
        shards = len(list(ckpt.glob("*.safetensors")))
        image_tokens = (IMAGE_SIZE // PATCH) ** 2
        done = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), args.method, args.device,
                               str(args.calib_samples), str(args.calib_length), str(args.lwc_epochs),
                               str(image_tokens), str(SHAPES[args.shape]["vocab_size"])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"stream_quantize: the child failed:\n{done.stderr[-4000:]}")
        row = {"shape": args.shape, "method": args.method,
               "lwc_epochs": args.lwc_epochs if args.method == "lwc" else 0,
               "device": args.device, "calib_samples": args.calib_samples, "calib_length": args.calib_length,
               "checkpoint_gib": size / 2**30, "shards": shards, "write_s": write_s,
               **json.loads(done.stdout.strip().splitlines()[-1])}
    print(json.dumps(row))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
