"""Training: sample encoding and the DeepSpeed loop shared by the warmup and hybrid stages."""
