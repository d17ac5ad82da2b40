"""A vocabulary built from a task's tokens, with PAD / BOS / EOS.

Tasks written in single characters (digits and signs) encode through a byte lookup table, with no
per-character Python; tasks with multi-character tokens (maze node labels 1-99) through a regex that
tries the longest tokens first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")


class Tokenizer:
    def __init__(self, vocabulary: Sequence[str]) -> None:
        if len(set(vocabulary)) != len(vocabulary) or not all(vocabulary):
            raise ValueError("a vocabulary needs distinct, non-empty tokens")
        self.vocabulary = list(vocabulary)
        self.itos = [*SPECIALS, *vocabulary]
        self.vocab_size = len(self.itos)
        self.stoi = {token: i for i, token in enumerate(self.itos) if i >= len(SPECIALS)}
        self.characters = all(len(token) == 1 and ord(token) < 128 for token in vocabulary)
        if self.characters:
            self._lookup = np.full(256, -1, dtype=np.int64)
            for token, i in self.stoi.items():
                self._lookup[ord(token)] = i
            self._lookup[0] = PAD  # numpy pads fixed-width byte strings with NUL
        else:
            longest_first = sorted(vocabulary, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, longest_first)))

    def split(self, text: str) -> list[str]:
        """The tokens of `text`."""
        if self.characters:
            return list(text)
        tokens = self._pattern.findall(text)
        if "".join(tokens) != text:
            raise ValueError(f"text outside the vocabulary: {text!r}")
        return tokens

    def encode(self, text: str) -> np.ndarray:
        if not self.characters:
            return np.array([self.stoi[token] for token in self.split(text)], dtype=np.int64)
        ids = self._lookup[np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = sorted({ch for ch in text if ch not in self.stoi})
            raise ValueError(f"characters outside the vocabulary: {bad}")
        return ids

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text."""
        count = len if self.characters else (lambda text: len(self.split(text)))
        return np.fromiter(map(count, texts), dtype=np.int64, count=len(texts))

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts of one token length into one (len(texts), length) array."""
        if not self.characters:
            rows = [self.encode(t) for t in texts]
            if len({len(r) for r in rows}) > 1:
                raise ValueError("encode_batch needs texts of one length")
            return np.stack(rows)
        if len({len(t) for t in texts}) > 1:
            raise ValueError("encode_batch needs texts of one length")
        return self.encode("".join(texts)).reshape(len(texts), -1)

    def encode_padded(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode texts of any lengths into a PAD-filled (len(texts), longest) array, and the lengths."""
        if not self.characters:
            rows = [self.encode(t) for t in texts]
            lengths = np.array([len(r) for r in rows], dtype=np.int64)
            ids = np.full((len(rows), int(lengths.max(initial=0))), PAD, dtype=np.int64)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = row
            return ids, lengths
        raw = np.array(texts, dtype=np.bytes_)
        width = raw.dtype.itemsize
        ids = self._lookup[raw.view(np.uint8).reshape(len(texts), width)]
        if (ids < 0).any():
            raise ValueError("characters outside the vocabulary in a batch")
        return ids, self.lengths(texts)

    def decode(self, ids: Sequence[int]) -> str:
        """Tokens up to the first EOS (or PAD), joined; specials are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i in (EOS, PAD):
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)
