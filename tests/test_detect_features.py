"""The pure pieces of query detection's block features, on tiny tensors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from remcli.detection.features import model_features, pooled
from remcli.detection.symptoms import query_similarity, side_by_side
from remcli.models import build_model
from remcli.models.blocks import block_outputs


def test_pooled_takes_each_channels_max_and_mean():
    x = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]], [[-1.0, -1.0], [-1.0, -5.0]]]])  # (1, 2, 2, 2)
    assert torch.equal(pooled(x), torch.tensor([[3.0, -1.0, 1.0, -2.0]]))
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])  # (1, T=2, D=2)
    assert torch.equal(pooled(tokens), torch.tensor([[3.0, 2.0, 2.0, 1.0]]))
    assert torch.equal(pooled(torch.ones(2, 3)), torch.ones(2, 3))


def test_side_by_side_weighs_every_block_the_same():
    """A block with features 1000x larger does not drown the other: each part is unit length."""
    gen = torch.Generator().manual_seed(0)
    small, large = torch.randn(6, 3, generator=gen), 1000 * torch.randn(6, 5, generator=gen)
    rows = torch.tensor([True, True, True, True, False, False])
    samples, queries = side_by_side([small, large], rows, [small[:2], large[:2]])
    assert samples.shape == (6, 8) and queries.shape == (2, 8)
    assert torch.allclose(samples[:, :3].norm(dim=1), torch.ones(6)) and torch.allclose(samples[:, 3:].norm(dim=1), torch.ones(6))
    assert torch.equal(queries, samples[:2])  # queries scaled with the rows' centres, like the samples


def test_block_similarity_finds_a_pattern_only_one_block_sees():
    """20 of 200 rows share a direction in the first block only; the last block is noise that
    hides it, as a memorising model's penultimate layer can. Side by side, the queries' direction
    ranks most of the 20 first; the last block alone finds what chance does (2 of 20)."""
    gen = torch.Generator().manual_seed(0)
    early, late = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen)
    pattern = torch.zeros(16)
    pattern[3] = 4.0
    early[:20] += pattern
    queries_early, queries_late = torch.randn(8, 16, generator=gen) + pattern, torch.randn(8, 16, generator=gen)
    rows = torch.ones(200, dtype=torch.bool)
    samples, queries = side_by_side([early, late], rows, [queries_early, queries_late])
    found = set(torch.topk(query_similarity(samples, rows, queries), 20).indices.tolist())
    alone = set(torch.topk(query_similarity(late, rows, queries_late), 20).indices.tolist())
    assert len(found & set(range(20))) >= 14 and len(alone & set(range(20))) <= 5


def test_model_features_reads_every_block_then_the_classifier():
    model = build_model("resnet9", 10, 3, 32, width=0.25).eval()
    batches = [type("B", (), {"inputs": torch.rand(3, 3, 32, 32)})(), type("B", (), {"inputs": torch.rand(2, 3, 32, 32)})()]
    parts = model_features(model, batches, "fp32", blocks=True)
    assert len(parts) == len(block_outputs(model)) + 1
    assert all(p.shape[0] == 5 for p in parts)
    assert torch.equal(parts[-1], model_features(model, batches, "fp32")[-1])  # the classifier's input, as without blocks
    assert parts[0].shape[1] == 2 * 16  # conv1's 16 channels: max and mean


def test_the_confused_recall_ceiling_runs_from_chance_to_certainty():
    """benchmarks/query_detect.py's ceiling for `--confused`: a pair the model cannot tell apart
    allows chance recall (K of N), a pair it always tells apart allows all of the swap."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "query_detect.py"
    spec = importlib.util.spec_from_file_location("query_detect", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    chance, fair, sure = (module.recall_ceiling(acc, 30, 300, draws=2000) for acc in (0.5, 0.8, 0.999))
    assert chance == pytest.approx(0.1, abs=0.01)
    assert chance < fair < sure and sure > 0.95
