import numpy as np
import pytest

from selfimprove.tokenizer import BOS, EOS, PAD, Tokenizer


def test_round_trip():
    tok = Tokenizer()
    for text in ["0123456789", "12+34=", "=", "9" * 40]:
        ids = tok.encode(text)
        assert ids.min() >= 3  # no special token for a character
        assert tok.decode(ids) == text


def test_specials_and_decode_stops_at_eos():
    tok = Tokenizer()
    assert {PAD, BOS, EOS} == {0, 1, 2}
    ids = [*tok.encode("12"), EOS, *tok.encode("34")]
    assert tok.decode(ids) == "12"
    assert tok.decode([BOS, *tok.encode("7")]) == "7"


def test_encode_padded():
    tok = Tokenizer()
    ids, lengths = tok.encode_padded(["1", "123", "12+4="])
    assert ids.shape == (3, 5)
    assert lengths.tolist() == [1, 3, 5]
    assert (ids[0, 1:] == PAD).all() and (ids[1, 3:] == PAD).all()
    assert tok.decode(ids[2]) == "12+4="


def test_encode_batch_needs_equal_lengths():
    tok = Tokenizer()
    assert np.array_equal(tok.encode_batch(["12", "34"]), np.stack([tok.encode("12"), tok.encode("34")]))
    with pytest.raises(ValueError, match="one length"):
        tok.encode_batch(["1", "12"])


def test_unknown_character_is_rejected():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Tokenizer().encode("12a")
