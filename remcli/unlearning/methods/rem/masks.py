"""Per-sample binary masks over REM's dedicated units, as a pure function of (seed, sample id).

No mask table is stored (the research code cached ~13 GiB of uint8 masks for ResNet-9 on CIFAR-10)
and no RNG is reseeded: a counter-based 32-bit integer hash (Wellons' "lowbias32") of the seed,
the sample id and the unit index gives a uniform number per (sample, unit); a unit is on when it
falls below the density. A whole batch's masks are computed in one vectorised call, on any device.

All identified samples share one mask, drawn from a separate key stream, so it is not tied to
any particular sample's own mask (a collision needs one specific id among 2^32) (the research code's shared mask was seed 0, which
is also sample #0's mask).
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding values in [0, 2^32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _keys(seed: int, ids: torch.Tensor, stream: int) -> torch.Tensor:
    base = mix32(torch.tensor([(seed & _M32) ^ mix32(torch.tensor([stream + 0x51ED27])).item()], device=ids.device))
    return mix32(base ^ mix32(ids.to(torch.int64) & _M32))


def unit_masks(
    sample_ids: torch.Tensor,
    identified: torch.Tensor,
    num_units: int,
    density: float,
    seed: int,
) -> torch.Tensor:
    """Float 0/1 masks of shape (B, num_units).

    `sample_ids`: int64 (B,) training-split positions; `identified`: bool (B,), rows that use
    the one shared mask of the identified set.
    """
    own = _keys(seed, sample_ids, stream=0)
    shared = _keys(seed, torch.zeros_like(sample_ids), stream=1)
    keys = torch.where(identified.to(sample_ids.device), shared, own)
    units = torch.arange(num_units, device=sample_ids.device, dtype=torch.int64)
    hashed = mix32(keys[:, None] + ((units[None, :] + 1) * 0x9E3779B9 & _M32))
    return (hashed.to(torch.float64) < density * 2.0**32).to(torch.float32)
