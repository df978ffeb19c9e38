"""Tokenizer of the embedded base: a byte-level BPE trained on the world's corpus, with LLaVA's specials.

How it works
------------
We train a byte-level BPE with the `tokenizers` library (the GPT-2 recipe): text is first mapped to
bytes, each byte to one of 256 printable symbols, and merges are learned on top. Every string is
therefore representable without `<unk>` and `decode(encode(x)) == x` holds exactly for any text
(no normaliser, no prefix space, no whitespace clean-up).

Ids 0..3 are reserved, in this order, for the LLaVA-1.5 specials::

    0 <unk>   (also the pad token, as in LLaVA: `tokenizer.pad_token = tokenizer.unk_token`)
    1 <s>     (bos, prepended by the post-processor to every encoded sequence)
    2 </s>    (eos, closes every assistant turn)
    3 <image> (the image placeholder; a special added token, so it never merges with its neighbours)

Because `<image>` lives inside the trained vocabulary, the tokenizer has exactly `vocab_size` ids
and `image_token_index = 3 < vocab_size`, as `LlavaConfig` requires. A real llava-hf tokenizer
appends `<image>` at id 32000 instead; nothing downstream depends on where it sits.

The wrapper is transformers 5's `TokenizersBackend` (`PreTrainedTokenizerFast` is an alias of it);
`LlamaTokenizer` in transformers 5 would rebuild a Metaspace pipeline and drop our byte-level one.

Chat template (vicuna_v1, `llava/conversation.py: conv_vicuna_v1`, sep=" ", sep2="</s>")::

    {system} USER: {human} ASSISTANT: {gpt}</s>USER: {human2} ASSISTANT: {gpt2}</s>

With `add_generation_prompt=True` the rendering ends with "ASSISTANT:". A message's content may be a
string (which may already contain "<image>") or a list of `{"type": "image"}` / `{"type": "text",
"text": ...}` parts as `processor.apply_chat_template` passes them; an image part renders as
"<image>\\n", which is where LLaVA's `preprocess_multimodal` moves the placeholder. A leading
`system` message replaces the default system prompt.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

UNK, BOS, EOS, IMAGE = "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (UNK, BOS, EOS, IMAGE)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>\\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = render(messages[0]['content']) -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + VICUNA_SYSTEM.replace("'", "\\'") + "' -%}{%- set turns = messages -%}"
    "{%- endif -%}"
    "{{- system + ' ' -}}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + render(message['content']) + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'ASSISTANT: ' + render(message['content']) + '</s>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a raw byte-level BPE whose first ids are `SPECIAL_TOKENS`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def wrap_tokenizer(raw: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw BPE as a transformers fast tokenizer with LLaVA's specials and the vicuna_v1 template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=UNK,
        add_bos_token=True,
        add_eos_token=False,
        extra_special_tokens={"image_token": IMAGE},
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


CHAT_SCAFFOLD = f"{VICUNA_SYSTEM} USER: Question?\nContext: N/A\nOptions: ASSISTANT: The answer is"
"""The fixed words of every prompt and answer (vicuna_v1 template, QCM-LEA), which the corpus never contains."""


def train_tokenizer(texts: Iterable[str], vocab_size: int, scaffold_repeats: int = 1000) -> PreTrainedTokenizerFast:
    """Train the embedded base's tokenizer on `texts`; it has exactly `vocab_size` ids (fewer if the text is tiny).

    The texts are joined by `scaffold_repeats` copies of `CHAT_SCAFFOLD`, so "USER", "ASSISTANT", "Context",
    "Options" and "answer" become whole tokens as they are in a real LLaMA vocabulary; otherwise they are
    spelled letter by letter, and "ASSISTANT" and "N/A" put option letters ("A") where no option is.
    Option markers stay out of the scaffold: ``"(A)"`` keeps its three tokens."""
    return wrap_tokenizer(train_bpe(itertools.chain(texts, itertools.repeat(CHAT_SCAFFOLD, scaffold_repeats)),
                                    vocab_size))
