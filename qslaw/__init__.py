"""qslaw: 4-bit adaptation of LLaVA-style models with QSLAW (learnable group scales, multimodal warmup)."""
