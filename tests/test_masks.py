"""REM's per-sample unit masks: a pure, seeded function of (seed, sample id), one shared mask for D_f."""

from __future__ import annotations

import pytest
import torch

from remcli.unlearning.methods.rem.masks import unit_masks


def masks_for(ids, identified=None, units=500, density=0.2, seed=0) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.int64)
    if identified is None:
        identified = torch.zeros(len(ids), dtype=torch.bool)
    return unit_masks(ids, torch.as_tensor(identified, dtype=torch.bool), units, density, seed)


def test_shape_dtype_and_binary_values():
    m = masks_for(range(10), units=37, density=0.3)
    assert m.shape == (10, 37)
    assert m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}


def test_deterministic_for_the_same_inputs():
    ids = torch.arange(100, 164)
    identified = ids % 5 == 0
    first = unit_masks(ids, identified, 500, 0.2, seed=7)
    second = unit_masks(ids.clone(), identified.clone(), 500, 0.2, seed=7)
    assert torch.equal(first, second)


def test_a_samples_mask_does_not_depend_on_the_rest_of_the_batch():
    full = masks_for(range(50))
    picked = masks_for([3, 41, 17])
    assert torch.equal(picked, full[[3, 41, 17]])


def test_all_rows_pairwise_distinct():
    m = masks_for(range(64), units=500, density=0.2)
    assert torch.unique(m, dim=0).shape[0] == 64
    # and not merely distinct by one unit: independent masks at 20% differ in ~160 of 500 units
    hamming = torch.cdist(m, m, p=1)
    off_diagonal = hamming[~torch.eye(64, dtype=torch.bool)]
    assert off_diagonal.min() > 50, off_diagonal.min()


def test_identified_rows_share_one_mask_distinct_from_every_other_row():
    ids = torch.arange(64)
    identified = torch.zeros(64, dtype=torch.bool)
    identified[[0, 5, 9, 30, 63]] = True
    m = unit_masks(ids, identified, 500, 0.2, seed=0)
    shared = m[identified]
    assert torch.unique(shared, dim=0).shape[0] == 1
    others = m[~identified]
    assert not (others == shared[0]).all(dim=1).any()
    # the shared mask is a mask like any other, not all zeros / all ones
    assert 0.1 < float(shared[0].mean()) < 0.3


def test_shared_mask_is_independent_of_which_samples_are_identified():
    a = masks_for([2, 400, 999], identified=[True, True, True])
    b = masks_for([7], identified=[True])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[0])


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_shared_mask_never_equals_a_samples_own_mask(seed):
    """The research code's shared mask was sample #0's own mask; this one has its own key stream."""
    own = masks_for(range(256), units=500, seed=seed)
    shared = masks_for([0], identified=[True], units=500, seed=seed)[0]
    assert not (own == shared).all(dim=1).any()


@pytest.mark.parametrize("density", [0.2, 0.5])
def test_density_matches_request(density):
    m = masks_for(range(256), units=1000, density=density, seed=3)
    assert abs(float(m.mean()) - density) <= 0.02
    # per sample and per unit, not just on average
    assert (m.mean(dim=1) - density).abs().max() < 0.1
    assert (m.mean(dim=0) - density).abs().max() < 0.15
    assert (m.sum(dim=0) > 0).all() and (m.sum(dim=0) < 256).all()


def test_density_extremes():
    assert masks_for(range(8), density=0.0).sum() == 0
    assert masks_for(range(8), density=1.0).min() == 1


def test_depends_on_the_seed():
    ids = torch.arange(32)
    identified = torch.zeros(32, dtype=torch.bool)
    identified[0] = True
    a = unit_masks(ids, identified, 500, 0.2, seed=0)
    b = unit_masks(ids, identified, 500, 0.2, seed=1)
    assert not torch.equal(a[0], b[0]), "the shared mask must change with the seed"
    assert not (a[1:] == b[1:]).all(dim=1).any(), "every sample's own mask must change with the seed"


def test_does_not_touch_the_global_rng():
    torch.manual_seed(2024)
    before = torch.get_rng_state().clone()
    masks_for(range(64), identified=[i % 3 == 0 for i in range(64)], units=300, seed=11)
    assert torch.equal(torch.get_rng_state(), before)
