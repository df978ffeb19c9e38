"""The embedded default's tiny LLaVA: built, pretrained and saved in the llava-hf format (``builder``).

``tokenizer`` (BPE trained on the corpus), ``pretrain`` (the LM's loop), ``circuits`` (compiled copy and
option-lookup heads), ``contrastive`` (the CLIP-style tower), ``caption`` (projector alignment),
``grounding`` (optional grid terms), ``instruct`` (optional visual instruction tuning).
"""
