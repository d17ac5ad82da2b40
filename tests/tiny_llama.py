"""A tiny, randomly initialised Llama with a tokenizer of its own, saved as a model directory: what `model=hf`
runs on in the tests (the `tiny_llama` fixture) and in benchmarks/gpu_check.sh when no real model is named,
built here with no download.

    python tests/tiny_llama.py DIR

The tokenizer is a byte-level BPE, like Llama 3's: each task symbol is one token, and so are the merged
numbers "12" and "34", so that its own encoding of "12+34=" is 4 tokens where selfimprove feeds 6. Its
ids, written out (the tests name them): + 0, = 1, * 2, ( 3, ) 4, 0-9 5-14, "12" 15, "34" 16,
<|begin_of_text|> 17, <|end_of_text|> 18 (the special tokens last, as in Llama 3's vocabulary).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

SYMBOLS = [*"+=*()", *"0123456789"]
MERGED = ["12", "34"]
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def save_tiny_llama(path: str | Path, without: Sequence[str] = (), seed: int = 0) -> Path:
    """Write the model and its tokenizer to `path`; `without`: symbols left out of the vocabulary (the
    tokenizer of a model that cannot write some task)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils.logging import disable_progress_bar

    tokens = [t for t in [*SYMBOLS, *MERGED] if t not in without]
    vocab = {token: i for i, token in enumerate([*tokens, BOS, EOS])}
    merges = [(m[0], m[1]) for m in MERGED if m in vocab]
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as Llama 3.2
        max_position_embeddings=512,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        tie_word_embeddings=True,
        initializer_range=0.5,  # large random weights: greedy answers vary from prompt to prompt and end early
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    disable_progress_bar()  # transformers draws one for saving a single 80 kB file
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="the model directory to write")
    save_tiny_llama(parser.parse_args().dir)


if __name__ == "__main__":
    main()
