"""Character vocabulary with PAD / BOS / EOS, encoded through a lookup table (no per-char Python)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
CHARS = "0123456789+="


class Tokenizer:
    def __init__(self, chars: str = CHARS) -> None:
        self.itos = [*SPECIALS, *chars]
        self.vocab_size = len(self.itos)
        self._lookup = np.full(256, -1, dtype=np.int64)
        for i, ch in enumerate(chars, start=len(SPECIALS)):
            self._lookup[ord(ch)] = i
        self._lookup[0] = PAD  # numpy pads fixed-width byte strings with NUL

    def encode(self, text: str) -> np.ndarray:
        ids = self._lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = sorted({ch for ch in text if self._lookup[ord(ch)] < 0})
            raise ValueError(f"characters outside the vocabulary: {bad}")
        return ids

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Encode equal-length strings into one (len(texts), length) array."""
        if len({len(t) for t in texts}) > 1:
            raise ValueError("encode_batch needs strings of one length")
        return self.encode("".join(texts)).reshape(len(texts), -1)

    def encode_padded(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode strings of any lengths into a PAD-filled (len(texts), longest) array, and the lengths."""
        raw = np.array(texts, dtype=np.bytes_)
        width = raw.dtype.itemsize
        ids = self._lookup[raw.view(np.uint8).reshape(len(texts), width)]
        if (ids < 0).any():
            raise ValueError("characters outside the vocabulary in a batch")
        return ids, np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))

    def decode(self, ids: Sequence[int]) -> str:
        """Characters up to the first EOS (or PAD); specials are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i in (EOS, PAD):
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)
