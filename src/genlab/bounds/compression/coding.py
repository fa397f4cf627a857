"""The message: quantized subspace coordinates as real bytes, arithmetic (range) coded with ``constriction``.

Layout of ``message.bin``::

    varint(len(payload))  payload = codebook (L float16, little-endian) + range-coded symbols

The range coder's 32-bit words are written little-endian and trailing zero bytes are dropped (the decoder pads
them back), so no byte is wasted. Two symbol models (both known to encoder and decoder; which one is a declared
setting):

- ``adaptive`` (default): Krichevsky-Trofimov, ``P(s_i = k) = (n_k(<i) + 1/2) / (i + L/2)``: no counts sent,
  about ``d H + (L-1)/2 log2 d`` bits;
- ``two-part``: the ``L`` symbol counts first, each in ``ceil(log2(d+1))`` bits (fixed width, so they are part of
  the range-coded stream as uniform symbols), then the symbols under the empirical distribution they define.

Why the bound may charge ``8 * len(message.bin)`` bits: the varint length prefix makes the set of all possible
files prefix-free (no file is a prefix of another: the prefix says where each ends), so by Kraft's inequality
``sum 2^-bits <= 1`` and ``P(h) = 2^-bits(message(h))`` is a valid prior whatever the range coder does inside the
payload. Decoding needs only ``d``, ``L`` and the symbol model, which the certificate declares.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genlab.errors import GenlabError

SYMBOL_MODELS = ("adaptive", "two-part")


class MessageError(GenlabError):
    """A message is truncated, corrupt or does not decode to what its certificate says."""


def _constriction():
    try:
        import constriction
    except ImportError as err:  # a dependency, so only a broken install gets here
        raise MessageError("the constriction package is needed to code messages: pip install constriction==0.5.0"
                           ) from err
    return constriction


# ------------------------------------------------------------------ varint (prefix-free length)
def encode_varint(value: int) -> bytes:
    """LEB128: 7 bits per byte, high bit set on every byte but the last."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes) -> tuple[int, int]:
    """``(value, bytes used)``; raises :class:`MessageError` if ``data`` ends inside the varint."""
    value, shift = 0, 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
        if shift > 63:
            break
    raise MessageError("message is truncated or corrupt: its length prefix does not end")


# ------------------------------------------------------------------ symbol models
def _kt_probabilities(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Row ``i``: the KT estimate from the counts of ``symbols[:i]`` (float64, unnormalised)."""
    onehot = np.zeros((len(symbols), levels), dtype=np.float64)
    onehot[np.arange(len(symbols)), symbols] = 1.0
    before = np.cumsum(onehot, axis=0) - onehot
    return before + 0.5


def _count_width(d: int) -> int:
    return max(1, math.ceil(math.log2(d + 1)))


def encode_symbols(symbols: np.ndarray, levels: int, model: str) -> np.ndarray:
    """The range coder's 32-bit words for ``symbols`` in ``[0, levels)`` under a symbol model."""
    c = _constriction()
    enc = c.stream.queue.RangeEncoder()
    family = c.stream.model.Categorical(perfect=False)
    if model == "adaptive":
        enc.encode(symbols.astype(np.int32), family, _kt_probabilities(symbols, levels))
    elif model == "two-part":
        counts = np.bincount(symbols, minlength=levels)
        width = _count_width(len(symbols))
        # each count as `width` uniform bits, then the symbols under the empirical distribution
        bits = np.array([(int(n) >> k) & 1 for n in counts for k in range(width)], dtype=np.int32)
        uniform = c.stream.model.Categorical(np.array([0.5, 0.5]), perfect=False)
        enc.encode(bits, uniform)
        probs = np.broadcast_to(counts.astype(np.float64), (len(symbols), levels))
        enc.encode(symbols.astype(np.int32), family, np.ascontiguousarray(probs))
    else:
        raise MessageError(f"unknown symbol model {model!r}; allowed: {', '.join(SYMBOL_MODELS)}")
    return enc.get_compressed()


def decode_symbols(words: np.ndarray, d: int, levels: int, model: str) -> np.ndarray:
    """``d`` symbols from the words :func:`encode_symbols` wrote (constriction's errors pass through)."""
    c = _constriction()
    dec = c.stream.queue.RangeDecoder(words)
    family = c.stream.model.Categorical(perfect=False)
    if model == "adaptive":
        counts = np.full(levels, 0.5)
        out = np.empty(d, dtype=np.int64)
        for i in range(d):
            out[i] = dec.decode(family, counts[None, :])[0]
            counts[out[i]] += 1.0
        return out
    if model == "two-part":
        width = _count_width(d)
        uniform = c.stream.model.Categorical(np.array([0.5, 0.5]), perfect=False)
        bits = dec.decode(uniform, levels * width)
        counts = np.array([sum(int(bits[j * width + k]) << k for k in range(width)) for j in range(levels)])
        if counts.sum() != d:
            raise MessageError(f"message is corrupt: its symbol counts sum to {counts.sum()}, not d = {d}")
        probs = np.broadcast_to(counts.astype(np.float64), (d, levels))
        return dec.decode(family, np.ascontiguousarray(probs)).astype(np.int64)
    raise MessageError(f"unknown symbol model {model!r}; allowed: {', '.join(SYMBOL_MODELS)}")


def pack_words(words: np.ndarray) -> bytes:
    """The range coder's 32-bit words as little-endian bytes, trailing zero bytes dropped (:func:`unpack_symbols`
    pads them back)."""
    return words.astype("<u4").tobytes().rstrip(b"\x00")


def unpack_symbols(code: bytes, d: int, levels: int, model: str, what: str) -> np.ndarray:
    """``d`` symbols in ``[0, levels)`` from bytes :func:`pack_words` wrote; ``what`` names them in errors.

    Raises:
        MessageError: the stream does not decode, or to symbols outside ``[0, levels)``.
    """
    words = np.frombuffer(code + b"\x00" * (-len(code) % 4), dtype="<u4").astype(np.uint32)
    try:
        symbols = decode_symbols(words, d, levels, model)
    except MessageError:
        raise
    except Exception as err:  # constriction signals a corrupt stream with its own exceptions
        raise MessageError(f"message is corrupt: {what} do not decode ({err})") from None
    if symbols.min(initial=0) < 0 or symbols.max(initial=0) >= levels:
        raise MessageError(f"message is corrupt: {what} lie outside the codebook")
    return symbols


# ------------------------------------------------------------------ the message
def encode_message(symbols: torch.Tensor, codebook: torch.Tensor, model: str = "adaptive") -> bytes:
    """The bytes of ``message.bin`` for ``symbols`` (ints in ``[0, L)``) and a codebook of ``L`` values.

    The codebook is stored as float16: pass the values the predictor uses (see
    :func:`~genlab.bounds.compression.quantize.stored_codebook`).
    """
    sym = symbols.detach().cpu().numpy().astype(np.int64).reshape(-1)
    levels = codebook.numel()
    if sym.size and (sym.min() < 0 or sym.max() >= levels):
        raise MessageError(f"symbols must lie in [0, {levels}); got [{sym.min()}, {sym.max()}]")
    book = codebook.detach().cpu().numpy().astype("<f2").tobytes()
    payload = book + pack_words(encode_symbols(sym, levels, model))
    return encode_varint(len(payload)) + payload


def decode_message(message: bytes, d: int, levels: int, model: str = "adaptive") -> tuple[torch.Tensor, torch.Tensor]:
    """``(symbols, codebook)`` from the bytes of ``message.bin`` (``d`` symbols, ``L`` levels, its symbol model).

    Raises:
        MessageError: the message is truncated, has trailing bytes, or does not decode.
    """
    symbols, codebook, end = decode_chunk(message, 0, d, levels, model)
    if end != len(message):
        raise MessageError(f"message is followed by {len(message) - end} extra bytes after its last part")
    return symbols, codebook


def decode_chunk(message: bytes, offset: int, d: int, levels: int,
                 model: str = "adaptive") -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(symbols, codebook, end)``: the chunk :func:`encode_message` wrote at ``message[offset:]``, and the offset
    just after it (a message may hold several chunks one after another: each says where it ends).

    Raises:
        MessageError: the chunk is truncated or does not decode.
    """
    size, used = decode_varint(message[offset:])
    start = offset + used
    if len(message) < start + size:
        raise MessageError(f"message is truncated: its prefix says {size} payload bytes, the file holds "
                           f"{len(message) - start}")
    payload = message[start: start + size]
    if size < 2 * levels:
        raise MessageError(f"message is truncated: {size} payload bytes cannot hold a codebook of {levels} levels")
    codebook = torch.from_numpy(np.frombuffer(payload[: 2 * levels], dtype="<f2").astype(np.float32).copy())
    if not torch.isfinite(codebook).all():
        raise MessageError("message is corrupt: its codebook holds non-finite values")
    symbols = unpack_symbols(payload[2 * levels:], d, levels, model, "the coordinates' symbols")
    return torch.from_numpy(symbols), codebook, start + size


def message_bits(message: bytes) -> int:
    """The length the bound charges: ``8 x`` the bytes of the whole (prefix-free) message."""
    return 8 * len(message)
