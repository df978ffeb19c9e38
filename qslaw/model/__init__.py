"""Model-level pieces: load/save, surgery, calibration (in memory or streamed from shards), LoRA."""
