"""Real-checkpoint path: a llava-hf directory saved by the test itself (own tokenizer, processor) runs the DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from repo_copy import dvc, make_repo_copy
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

TEXT = ["The red square is left of the blue circle.", "Which animal lives in the lake?", "Options: (A) yes (B) no",
        "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT: The answer is A."]


def save_checkpoint(path: Path) -> Path:
    """A tiny LLaVA in llava-hf format, built without the project's embedded builder."""
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(TEXT * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="<unk>", additional_special_tokens=["<image>"],
                                        extra_special_tokens={"image_token": "<image>"})
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512),
        image_token_index=image_id, vision_feature_layer=-1, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    checkpoint = save_checkpoint(root / "tiny-llava-hf")
    repo = make_repo_copy(root / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["base"]["model"] = str(checkpoint)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return repo


def test_the_dag_runs_on_a_local_llava_hf_checkpoint(repo: Path) -> None:
    info = json.loads((repo / "artifacts/base/base_info.json").read_text())
    assert info["model"].endswith("tiny-llava-hf") and info["revision"] == "local"
    assert not (repo / "artifacts/base/build_report.json").exists()
    metrics = json.loads((repo / "artifacts/evaluate/metrics.json").read_text())
    assert metrics["protocol"]["questions"] > 0
    assert (repo / "artifacts/export/adapter/adapter_model.safetensors").exists()


def test_a_missing_checkpoint_fails_naming_the_key(tmp_path: Path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["base"]["model"] = str(tmp_path / "no-such-dir" / "nested")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc(repo, "repro", "base")
    assert result.returncode != 0
    assert "base.model" in result.stderr + result.stdout
    assert not (repo / "artifacts/base").exists()
