"""Detection's scoring signals, each a pure function of the trained-on samples' features
(`features.py`), their labels and which of them were identified. Three are registered:

* `similarity` (representation similarity within a training label). Samples of one corruption
  share what made them corrupt: a trigger patch (poison) or a swapped concept (interclass), and
  the model was trained to give them all the same wrong label, so in feature space they sit
  together, apart from the clean samples of that label. Score: cosine similarity of a sample's
  features, centred on its label's mean, to the centroid of the identified samples with that
  label (-1 for labels no identified sample carries). Range [-1, 1].
* `spectral` (spectral signatures, Tran et al. 2018, for backdoors): within each label an
  identified sample carries, the squared projection of a sample's centred features on the label's
  top singular vector, divided by the label's largest. A trigger that makes up a few percent of
  its label is that label's strongest direction of variance, whether or not the identified samples
  point at it; it needs no identified direction, so it does not degrade when only one or two
  samples were found. Range [0, 1] (-1 for labels not searched).
* `label-quality` (how badly a sample's label fits the data around it). A mislabelled sample that
  shares no concept with other corrupted ones (random label noise) is still a sample whose label
  a model *not* trained on it would not predict. Out-of-sample probabilities come from a linear
  probe (multinomial logistic regression, L2-normalised features) fitted on 4 of 5 folds and
  applied to the fifth; the score is 1 - p(given label), the complement of cleanlab's default
  label-quality score (self-confidence). Range [0, 1]. Implemented here rather than through
  cleanlab: that score is one line once the out-of-fold probabilities exist, and cleanlab would
  bring scikit-learn and SciPy for it.

Each is registered in `DETECT_SIGNALS`, so `--signal`, its help and the sweep's `detect_signal`
read the names from one place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from remcli.registry import Registry
from remcli.seeding import generator

SignalScore = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]  # (features, labels, identified, classes) -> scores
# Registered below their scoring functions, in auto's tie order. Metadata: `help` (the CLI's
# --signal help), `guided` (scores from
# the identified rows' own features, so checked on held-out halves), `all_labels` (searches every
# label, not only those an identified sample carries).
DETECT_SIGNALS = Registry[SignalScore]("signal", hint="or auto")
PROBE_FOLDS = 5


def similarity_scores(features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor) -> torch.Tensor:
    """Per training label that an identified row carries: centre the label's rows on their mean,
    then score each by the cosine similarity to the centroid of the label's identified rows; -1
    where no identified row has the label. `identified`: bool (N,)."""
    scores = torch.full((len(labels),), -1.0)
    for label in torch.unique(labels[identified]):
        rows = labels == label
        centred = F.normalize(features[rows] - features[rows].mean(dim=0, keepdim=True), dim=1)
        centroid = F.normalize(centred[identified[rows]].mean(dim=0), dim=0)
        scores[rows] = centred @ centroid
    return scores


def spectral_scores(features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor) -> torch.Tensor:
    """Spectral signatures (Tran et al., 2018) within each training label an identified row carries:
    centre the label's rows on their mean, take the top singular vector of the centred matrix,
    and score each row by its squared projection on it, divided by the label's largest (so in
    [0, 1]); -1 where no identified row has the label. Unlike `similarity_scores` it does not use
    the identified rows' direction: a poison that makes up a few percent of its label is the
    label's strongest direction of variance whether or not the user found any of it."""
    scores = torch.full((len(labels),), -1.0)
    for label in torch.unique(labels[identified]):
        rows = labels == label
        centred = features[rows] - features[rows].mean(dim=0, keepdim=True)
        if len(centred) < 2:
            scores[rows] = 1.0
            continue
        top = torch.linalg.svd(centred.double(), full_matrices=False).Vh[0]
        projection = (centred.double() @ top).square()
        scores[rows] = (projection / projection.max().clamp_min(1e-12)).float()
    return scores


def fit_linear_probe(x: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression (L2 penalty) fitted with L-BFGS: (weight (D, K), bias (K,))."""
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(x @ weight + bias, labels) + weight_decay * weight.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return weight.detach(), bias.detach()


def label_quality_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0, weight_decay: float = 1e-3) -> torch.Tensor:
    """1 - out-of-fold p(given label) from a linear probe on L2-normalised features: each row's
    probability comes from a probe fitted on the other folds (fold of a row: seeded permutation)."""
    x = F.normalize(features.float(), dim=1)
    perm = torch.randperm(len(labels), generator=generator(seed, "detect/probe-folds"))
    fold = torch.empty_like(perm)
    fold[perm] = torch.arange(len(labels)) % PROBE_FOLDS
    probs = torch.zeros(len(labels))
    for k in range(PROBE_FOLDS):
        fit, held = fold != k, fold == k
        if not held.any() or not fit.any():
            continue
        weight, bias = fit_linear_probe(x[fit], labels[fit], num_classes, weight_decay)
        with torch.no_grad():
            probs[held] = F.softmax(x[held] @ weight + bias, dim=1).gather(1, labels[held, None]).squeeze(1)
    return 1.0 - probs


DETECT_SIGNALS.add("similarity", lambda f, y, ids, k: similarity_scores(f, y, ids), guided=True, all_labels=False, help="a shared trigger or concept")
DETECT_SIGNALS.add(
    "spectral",
    lambda f, y, ids, k: spectral_scores(f, y, ids),
    guided=False,
    all_labels=False,
    help="a label's strongest direction of variance: a backdoor trigger",
)
DETECT_SIGNALS.add(
    "label-quality",
    lambda f, y, ids, k: label_quality_scores(f, y, k),
    guided=False,
    all_labels=True,
    help="labels a model not trained on the sample would not predict",
)


def signal_choices() -> tuple[str, ...]:
    """What `--signal` accepts: auto and every registered signal."""
    return ("auto", *DETECT_SIGNALS.names())


def held_out_percentiles(scores: torch.Tensor, held: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Percentile (1 = the top) of each `held` row's score among the `candidates` rows', in row
    order, ties counted half: a held-out sample tied with every unsearched label's -1 must not look
    well ranked."""
    pool = torch.sort(scores[candidates]).values
    if not held.any() or len(pool) == 0:
        return torch.zeros(int(held.sum()))
    below = (torch.searchsorted(pool, scores[held]) + torch.searchsorted(pool, scores[held], right=True)).float() / 2
    return below / len(pool)


def held_out_rank(scores: torch.Tensor, held: torch.Tensor, candidates: torch.Tensor) -> float:
    """Mean percentile of the `held` rows among the `candidates` (the AUC of held against candidates)."""
    percentiles = held_out_percentiles(scores, held, candidates)
    return float(percentiles.mean()) if len(percentiles) else 0.0
