import numpy as np
import pytest

from selfimprove.models.tokenizer import BOS, EOS, PAD, Tokenizer
from selfimprove.tasks import get_task

DIGITS = list("0123456789+=")


def test_round_trip():
    tok = Tokenizer(DIGITS)
    for text in ["0123456789", "12+34=", "=", "9" * 40]:
        ids = tok.encode(text)
        assert ids.min() >= 3  # no special token for a character
        assert tok.decode(ids) == text


def test_specials_and_decode_stops_at_eos():
    tok = Tokenizer(DIGITS)
    assert {PAD, BOS, EOS} == {0, 1, 2}
    ids = [*tok.encode("12"), EOS, *tok.encode("34")]
    assert tok.decode(ids) == "12"
    assert tok.decode([BOS, *tok.encode("7")]) == "7"


def test_encode_padded():
    tok = Tokenizer(DIGITS)
    ids, lengths = tok.encode_padded(["1", "123", "12+4="])
    assert ids.shape == (3, 5)
    assert lengths.tolist() == [1, 3, 5]
    assert (ids[0, 1:] == PAD).all() and (ids[1, 3:] == PAD).all()
    assert tok.decode(ids[2]) == "12+4="


def test_encode_batch_needs_equal_lengths():
    tok = Tokenizer(DIGITS)
    assert np.array_equal(tok.encode_batch(["12", "34"]), np.stack([tok.encode("12"), tok.encode("34")]))
    with pytest.raises(ValueError, match="one length"):
        tok.encode_batch(["1", "12"])


def test_unknown_character_is_rejected():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Tokenizer(DIGITS).encode("12a")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Tokenizer(list("0123456789=")).encode("1+2=")  # a vocabulary without "+"


def test_multi_character_tokens():
    """Maze node labels 1-99 are one token each: "12" is one token, not "1" and "2"."""
    tok = Tokenizer(get_task("maze").vocabulary)
    assert tok.split("12>5#12:5-5:12=") == ["12", ">", "5", "#", "12", ":", "5", "-", "5", ":", "12", "="]
    ids = tok.encode("99>1")
    assert len(ids) == 3 and tok.decode(ids) == "99>1"
    assert tok.lengths(["12>5", "1>2>3"]).tolist() == [3, 5]
    padded, lengths = tok.encode_padded(["12>5", "1>2>3"])
    assert padded.shape == (2, 5) and lengths.tolist() == [3, 5] and padded[0, 3:].tolist() == [PAD, PAD]
    assert tok.encode_batch(["12>5", "3>45"]).shape == (2, 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.encode("0>1")  # labels start at 1


def test_vocabulary_comes_from_the_task():
    assert Tokenizer(get_task("copy").vocabulary).itos[3:] == list("0123456789+=")  # one for digit tasks
    assert "*" in Tokenizer(get_task("multiplication").vocabulary).itos
