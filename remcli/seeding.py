"""Reproducibility by construction: every random choice gets its own generator.

A stage never touches the global RNGs. Instead each random decision (which samples to corrupt,
which are discovered, the validation split, the batch order, the weight initialisation) derives
its own seed from the user's `--seed` and a purpose string, so adding a new random choice never
shifts the others.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed that depends only on (seed, purpose)."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, purpose))
    return gen


@contextlib.contextmanager
def seeded_global_rng(seed: int, purpose: str) -> Iterator[None]:
    """For code that can only draw from the global RNG (module constructors' weight init).

    The caller's global RNG state is restored afterwards, so nothing outside is disturbed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, purpose))
        yield
