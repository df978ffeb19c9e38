"""Streamed quantize: from sharded safetensors, one block in full precision at a time, equal to the in-memory path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_llava, tiny_llava_batch

from qslaw.model.calibrate import calibrate
from qslaw.model.stream import ShardReader, streamed_quantize
from qslaw.model.surgery import quantize_model
from qslaw.quant.spec import CalibSpec, QuantSpec

SPEC = QuantSpec(bits=4, group_size=32, start_layer=0, gamma_mode="packed")


def batches() -> list[dict]:
    return [tiny_llava_batch(seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "llava"
    tiny_llava(layers=3).save_pretrained(out, max_shard_size="60KB")
    assert len(list(out.glob("model-*.safetensors"))) >= 3 and (out / "model.safetensors.index.json").exists()
    return out


def in_memory(checkpoint: Path, calib: CalibSpec) -> dict[str, torch.Tensor]:
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    qparams, _ = calibrate(model, batches(), SPEC, calib, progress=False)
    return quantize_model(model, SPEC, qparams).state_dict()


@pytest.mark.parametrize("calib", [CalibSpec(method="rtn"), CalibSpec(method="lwc", epochs=3)])
def test_streamed_quantize_equals_the_in_memory_path_bit_for_bit(checkpoint: Path, calib: CalibSpec) -> None:
    """Same block inputs, same arithmetic: RTN and LWC codes, steps, zeros and every other tensor are equal."""
    model, report = streamed_quantize(checkpoint, SPEC, calib, batches(), progress=False)
    streamed, reference = model.state_dict(), in_memory(checkpoint, calib)
    assert streamed.keys() == reference.keys()
    unequal = [k for k in reference if not torch.equal(streamed[k], reference[k])]
    assert not unequal, unequal[:5]
    assert any(k.endswith(".qweight") for k in streamed) and len(report) == 3
    assert not any(p.is_meta for p in model.parameters())


def test_both_llava_checkpoint_layouts_load(checkpoint: Path, tmp_path: Path) -> None:
    """save_pretrained writes the hub layout (language_model.model.*, vision_tower.*, ...), as llava-hf's own
    checkpoints are; transformers 5's layout (model.language_model.*) loads to the same model."""
    with open(checkpoint / "model.safetensors.index.json") as f:
        assert any(k.startswith("language_model.model.") for k in json.load(f)["weight_map"])
    tiny_llava(layers=3).save_pretrained(tmp_path / "new", save_original_format=False)
    assert "model.language_model.embed_tokens.weight" in load_file(tmp_path / "new" / "model.safetensors")
    a, _ = streamed_quantize(checkpoint, SPEC, CalibSpec(method="rtn"), batches(), progress=False)
    b, _ = streamed_quantize(tmp_path / "new", SPEC, CalibSpec(method="rtn"), batches(), progress=False)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_half_precision_checkpoint_keeps_its_dtype(tmp_path: Path) -> None:
    """Unquantized parts and the groups' s, z stay in the stored dtype; only one block is ever float32."""
    tiny_llava(layers=2).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    model, _ = streamed_quantize(tmp_path / "bf16", SPEC, CalibSpec(method="rtn"), batches(), progress=False)
    state = model.state_dict()
    assert state["model.language_model.embed_tokens.weight"].dtype == torch.bfloat16
    assert state["model.multi_modal_projector.linear_1.weight"].dtype == torch.bfloat16
    assert state["model.language_model.layers.0.input_layernorm.weight"].dtype == torch.bfloat16
    assert state["model.language_model.layers.1.self_attn.q_proj.scales"].dtype == torch.bfloat16
    assert state["model.language_model.layers.1.self_attn.q_proj.qweight"].dtype == torch.uint8
    logits = model(**tiny_llava_batch()).logits
    assert torch.isfinite(logits).all()


def test_an_unknown_checkpoint_tensor_is_named(checkpoint: Path, tmp_path: Path) -> None:
    names = {"model.language_model.embed_tokens.weight"}
    save_file({"surprise.weight": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="'surprise.weight' matches no parameter"):
        ShardReader(tmp_path, names)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import LlavaForConditionalGeneration  # noqa: F401  (the checkpoint's class, imported)
    from qslaw.model.stream import streamed_quantize
    from qslaw.quant.spec import CalibSpec, QuantSpec
    from tiny_models import tiny_llava_batch

    def status_kib(field):  # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child reports
        for line in open("/proc/self/status"):  # its parent's RSS at fork time as its own peak
            if line.startswith(field + ":"):
                return int(line.split()[1])

    torch.set_num_threads(1)
    batches = [tiny_llava_batch(seed=0)]
    base = status_kib("VmRSS")
    spec = QuantSpec(bits=4, group_size=64, start_layer=0, gamma_mode="packed")
    streamed_quantize(sys.argv[1], spec, CalibSpec(method="rtn"), batches, progress=False)
    peak = status_kib("VmHWM")
    print(json.dumps({"baseline_kib": base, "peak_kib": peak}))
""")


def test_streamed_quantize_never_holds_the_checkpoint_in_memory(tmp_path: Path) -> None:
    """Peak RSS above the post-import baseline stays below the checkpoint's size (measured in a subprocess)."""
    model = tiny_llava(layers=8, hidden=768, ffn=2048)
    model.save_pretrained(tmp_path / "big", max_shard_size="40MB")
    del model
    size_kib = sum(f.stat().st_size for f in (tmp_path / "big").glob("*.safetensors")) / 1024
    support = Path(__file__).resolve().parents[2] / "support"
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "big")], capture_output=True,
                          text=True, env={"PYTHONPATH": str(support), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    grown = figures["peak_kib"] - figures["baseline_kib"]
    assert size_kib > 200_000 and grown < size_kib, (grown, size_kib)  # in memory it would be > size_kib
