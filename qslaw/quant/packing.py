"""Bit packing of integer codes into uint8 containers.

How it works
------------
Codes of ``b`` bits are stored in the smallest power-of-two container that holds them:
2-bit codes four to a byte, 3- and 4-bit codes two to a byte (a 3-bit code wastes one bit; packing
3-bit codes across byte boundaries would save 25 % more but makes unpacking gather-heavy), 8-bit codes
one to a byte. Packing runs along the last dimension: ``(..., n)`` → ``(..., ceil(n / per_byte))``,
code ``j`` of a byte sits in bits ``[j·c, (j+1)·c)`` (little-endian within the byte, as in GPTQ/AWQ
int32 packing). The last dimension is zero-padded to a whole byte, so odd shapes round-trip when the
caller passes the original length to :func:`unpack`.
"""

from __future__ import annotations

import torch

from qslaw.quant.spec import SUPPORTED_BITS

_CONTAINER = {2: 2, 3: 4, 4: 4, 8: 8}


def container_bits(bits: int) -> int:
    """Bits each code occupies once packed."""
    if bits not in _CONTAINER:
        raise ValueError(f"bits: packing supports {SUPPORTED_BITS}, got {bits!r}")
    return _CONTAINER[bits]


def packed_length(n: int, bits: int) -> int:
    """Bytes needed for ``n`` codes along the packed dimension."""
    per_byte = 8 // container_bits(bits)
    return -(-n // per_byte)


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in ``[0, 2^bits)`` along the last dimension into uint8."""
    c = container_bits(bits)
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise TypeError(f"codes: expected an integer tensor, got {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= 2**bits):
        raise ValueError(f"codes: values must lie in [0, {2**bits - 1}] for {bits}-bit packing")
    per_byte = 8 // c
    n = codes.shape[-1]
    pad = packed_length(n, bits) * per_byte - n
    q = torch.nn.functional.pad(codes.to(torch.uint8), (0, pad)).reshape(*codes.shape[:-1], -1, per_byte)
    shifts = torch.arange(0, 8, c, dtype=torch.uint8, device=codes.device)
    return (q << shifts).sum(dim=-1, dtype=torch.uint8)


def unpack(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack`: uint8 ``(..., ceil(n / per_byte))`` → uint8 codes ``(..., n)``."""
    c = container_bits(bits)
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed: expected uint8, got {packed.dtype}")
    if packed.shape[-1] != packed_length(n, bits):
        raise ValueError(f"packed: last dimension {packed.shape[-1]} does not hold {n} codes of {bits} bits")
    shifts = torch.arange(0, 8, c, dtype=torch.uint8, device=packed.device)
    mask = torch.tensor(2**c - 1, dtype=torch.uint8, device=packed.device)
    q = (packed[..., None] >> shifts) & mask
    return q.reshape(*packed.shape[:-1], -1)[..., :n]
