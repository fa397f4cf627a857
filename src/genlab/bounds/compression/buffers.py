"""The predictor's buffers (BatchNorm running statistics) in the message: coded and charged, never recomputed.

An eval-mode BatchNorm divides by its running variance and subtracts its running mean, so those numbers are as
much part of the predictor as its weights. Recomputing them from the training sample at verification time would
make the hypothesis a function of the sample beyond its message, and the Occam prior (fixed before the data) would
no longer cover it; so they are coded, like ``w``, and the bound charges their bits.

Layout, after the coordinates' chunk of ``message.bin`` (``F`` = the base model's floating buffers with at least
one entry, ``I`` = its integer buffers, each in ``named_buffers()`` order):

1. for each buffer of ``F``: a domain byte (0: its values; 1: their logarithm, used when every value is positive,
   as running variances are, so that small and large ones keep the same relative precision), then the lowest and
   the highest value in that domain as two float16;
2. one range-coded stream (``varint(len)`` + words) of every entry of ``F`` as a symbol in ``[0, L)``: the
   nearest of ``L`` evenly spaced levels between its buffer's lowest and highest value, under the same symbol
   model as ``w`` (adaptive: no table sent, levels never used cost almost nothing); ``L`` (``buffer_levels``) is
   declared in the certificate;
3. each entry of ``I`` (``num_batches_tracked``) as a zigzag LEB128 varint, exactly.

Each part says where it ends and the number of parts and their sizes follow from the architecture the certificate
names, so the whole message stays prefix-free (no possible message is a prefix of another) and Kraft's inequality
still makes ``2^-(8 x bytes)`` a valid prior. Per-buffer ranges cost 40 bits a buffer; a codebook per buffer
would cost ``16 L`` and dominate the small buffers of a narrow network. The certified predictor uses the
*decoded* buffers: the errors counted are those of the network with quantized statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genlab.bounds.compression.coding import (MessageError, decode_varint, encode_symbols, encode_varint,
                                              pack_words, unpack_symbols)
from genlab.bounds.compression.quantize import nearest
from genlab.errors import ConfigError

BUFFER_LEVELS = 32   # genlab bound's default: 5 bits an entry at most, steps of 3% of a buffer's range


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _f16(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32).to(torch.float16).to(torch.float32))


def _levels(log: bool, lo: float, hi: float, levels: int) -> torch.Tensor:
    """The ``levels`` values of a buffer's grid (float32, computed the same way by encoder and decoder)."""
    grid = torch.linspace(lo, hi, levels, dtype=torch.float32) if levels > 1 else torch.tensor([lo])
    return grid.exp() if log else grid


def quantize_buffer(values: torch.Tensor, levels: int) -> tuple[bool, float, float, torch.Tensor]:
    """``(log, lo, hi, symbols)`` of a floating buffer: its domain, its float16 range there, and each entry's
    nearest grid level (:func:`_levels`); the decoded values are ``_levels(log, lo, hi, levels)[symbols]``."""
    flat = values.detach().reshape(-1).to(torch.float32)
    log = bool((flat > 0).all())
    domain = flat.log() if log else flat
    lo, hi = _f16(float(domain.min())), _f16(float(domain.max()))
    return log, lo, hi, nearest(domain, _levels(False, lo, hi, levels))   # nearest in the domain


def decoded_buffer(log: bool, lo: float, hi: float, symbols: torch.Tensor, levels: int) -> torch.Tensor:
    """The values a buffer's symbols stand for (flat, float32)."""
    return _levels(log, lo, hi, levels)[symbols]


def encode_buffers(buffers: dict[str, torch.Tensor], levels: int, symbol_model: str) -> bytes:
    """The buffers' part of the message (see the module's docstring), in the dict's order.

    Raises:
        ConfigError: a buffer holds non-finite values or values beyond float16's range (the training diverged).
    """
    heads, symbols, ints = bytearray(), [], bytearray()
    for name, value in buffers.items():
        if not value.is_floating_point():
            for v in value.reshape(-1).tolist():
                ints += encode_varint(_zigzag(int(v)))
            continue
        if value.numel() == 0:
            continue
        if not torch.isfinite(value).all():
            raise ConfigError(f"buffer {name} holds non-finite values (did the training diverge?); it cannot "
                              f"be coded")
        log, lo, hi, sym = quantize_buffer(value, levels)
        if not math.isfinite(lo) or not math.isfinite(hi):
            raise ConfigError(f"buffer {name} holds values beyond float16's range ({float(value.abs().max()):.3g});"
                              f" it cannot be coded")
        heads += bytes([int(log)]) + np.array([lo, hi], dtype="<f2").tobytes()
        symbols.append(sym)
    stream = b""
    if symbols:
        code = pack_words(encode_symbols(torch.cat(symbols).numpy().astype(np.int64), levels, symbol_model))
        stream = encode_varint(len(code)) + code
    return bytes(heads) + stream + bytes(ints)


def decode_buffers(message: bytes, offset: int, templates: dict[str, torch.Tensor], levels: int,
                   symbol_model: str) -> tuple[dict[str, torch.Tensor], int]:
    """The buffers decoded from ``message[offset:]`` (shapes and dtypes from ``templates``, name -> tensor, in
    the base model's order), and the offset just after them.

    Raises:
        MessageError: the message ends inside a buffer or does not decode.
    """
    floating = [n for n, t in templates.items() if t.is_floating_point() and t.numel() > 0]
    heads = {}
    for name in floating:
        head = message[offset: offset + 5]
        if len(head) < 5:
            raise MessageError(f"message is truncated inside the range of buffer {name}")
        if head[0] > 1:
            raise MessageError(f"message is corrupt: buffer {name} has domain byte {head[0]} (0 or 1 allowed)")
        lo, hi = (float(v) for v in np.frombuffer(head[1:], dtype="<f2"))
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise MessageError(f"message is corrupt: buffer {name} has range [{lo}, {hi}]")
        heads[name] = (bool(head[0]), lo, hi)
        offset += 5
    out: dict[str, torch.Tensor] = {}
    if floating:
        size, used = decode_varint(message[offset:])
        code = message[offset + used: offset + used + size]
        if len(code) < size:
            raise MessageError("message is truncated inside the buffers' symbols")
        offset += used + size
        total = sum(templates[n].numel() for n in floating)
        symbols = torch.from_numpy(unpack_symbols(code, total, levels, symbol_model, "the buffers' symbols"))
        start = 0
        for name in floating:
            t = templates[name]
            values = decoded_buffer(*heads[name], symbols[start: start + t.numel()], levels)
            out[name] = values.reshape(t.shape).to(t.dtype)
            start += t.numel()
    for name, t in templates.items():
        if name in out:
            continue
        if t.is_floating_point():          # no entries
            out[name] = t.detach().clone()
            continue
        values = []
        for _ in range(t.numel()):
            value, used = decode_varint(message[offset:])
            values.append(_unzigzag(value))
            offset += used
        try:
            out[name] = torch.tensor(values, dtype=t.dtype).reshape(t.shape)
        except (RuntimeError, OverflowError) as err:   # a value beyond the buffer's integer type
            raise MessageError(f"message is corrupt: buffer {name} does not decode ({err})") from None
    return {name: out[name] for name in templates}, offset


def buffer_record(names: list[str], levels: int, source: str = "message") -> dict | None:
    """The certificate's ``buffers`` field: the buffers' names, ``L`` and where they come from (``message``:
    coded after ``w``; ``prior``: the data-dependent prior centre's, fixed, in ``prior.safetensors``); ``None``:
    the model has none."""
    return {"names": list(names), "levels": levels, "source": source} if names else None
