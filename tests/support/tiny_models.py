"""Tiny models built inline for tests: a 2-block Llama and a 2-block LLaVA with a toy CLIP tower."""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

VOCAB, IMAGE_TOKEN = 96, 95
IMAGE_SIZE, PATCH = 16, 8
N_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2


def tiny_llama_config(layers: int = 2, hidden: int = 64, ffn: int = 128) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                       tie_word_embeddings=False)


def tiny_llava(layers: int = 2, hidden: int = 64, ffn: int = 128, seed: int = 0) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=tiny_llama_config(layers, hidden, ffn),
                         image_token_index=IMAGE_TOKEN, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    return LlavaForConditionalGeneration(config).eval()


def tiny_llava_batch(batch: int = 2, text: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, IMAGE_TOKEN, (batch, text), generator=g)
    ids = torch.cat([torch.full((batch, N_IMAGE_TOKENS), IMAGE_TOKEN), ids], dim=1)
    pixels = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    return {"input_ids": ids, "pixel_values": pixels, "attention_mask": torch.ones_like(ids)}

