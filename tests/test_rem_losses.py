"""REM's losses against values worked out by hand with `math`."""

from __future__ import annotations

import math

import pytest
import torch

from remcli.unlearning.losses import (
    npo_loss,
    npo_term,
    per_sample_ce,
    rem_repair_loss,
    selection_proxy,
)
from remcli.unlearning.selection import kept_by_rule, proxy_standard_error

CE = [0.5, 2.0, 1.2, 3.0]
CE_REF = [1.0, 0.5, 1.2, 0.1]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def npo_by_hand(ce: float, ce_ref: float, beta: float) -> float:
    return (2.0 / beta) * log_sigmoid(beta * (ce - ce_ref))


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_npo_term_matches_hand_values(beta):
    got = npo_term(t(CE), t(CE_REF), beta)
    expected = [npo_by_hand(c, r, beta) for c, r in zip(CE, CE_REF)]
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_npo_term_known_numbers():
    # equal CE: (2/beta) log(1/2)
    assert float(npo_term(t([1.3]), t([1.3]), 1.0)) == pytest.approx(2 * math.log(0.5))
    assert float(npo_term(t([1.3]), t([1.3]), 0.5)) == pytest.approx(4 * math.log(0.5))
    # ce - ce_ref = 1, beta 1: 2 log(1 / (1 + e^-1))
    assert float(npo_term(t([2.0]), t([1.0]), 1.0)) == pytest.approx(-2 * math.log(1 + math.exp(-1)))
    # ce - ce_ref = -2, beta 0.5: 4 log(1 / (1 + e^1))
    assert float(npo_term(t([0.0]), t([2.0]), 0.5)) == pytest.approx(-4 * math.log(1 + math.e))


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_npo_loss_is_minus_mean_of_terms(beta):
    expected = -sum(npo_by_hand(c, r, beta) for c, r in zip(CE, CE_REF)) / len(CE)
    assert float(npo_loss(t(CE), t(CE_REF), beta)) == pytest.approx(expected, rel=1e-12)


def test_npo_loss_decreases_as_ce_rises_and_is_bounded_below_by_zero():
    ref = t([1.0])
    values = [float(npo_loss(t([c]), ref)) for c in (0.0, 1.0, 3.0, 10.0, 50.0)]
    assert values == sorted(values, reverse=True)
    assert all(v > 0 for v in values) and values[-1] < 1e-12


def test_npo_loss_gradient_is_the_self_limiting_weight():
    """d(-l)/dCE = -2 sigmoid(beta (CE_ref - CE)) / batch size (the NPO weight)."""
    beta = 0.5
    ce = t(CE).requires_grad_(True)
    npo_loss(ce, t(CE_REF), beta).backward()
    expected = [-2.0 / (1.0 + math.exp(-beta * (r - c))) / len(CE) for c, r in zip(CE, CE_REF)]
    assert ce.grad.tolist() == pytest.approx(expected, rel=1e-10)


def test_npo_is_numerically_stable_for_large_gaps():
    out = npo_term(torch.tensor([0.0, 200.0]), torch.tensor([200.0, 0.0]), 1.0)
    assert torch.isfinite(out).all()
    assert float(out[0]) == pytest.approx(-400.0)
    assert float(out[1]) == pytest.approx(0.0, abs=1e-6)


# REM's repair loss, from logits. Each row's logits are chosen so its CE against label 0 is a given
# value: logits (0, x) give CE = log(1 + e^x), so x = log(e^CE - 1). The loss computes CE in fp32
# (as it does for bf16 logits), hence the 1e-6 tolerance.


def logits_for(ces) -> torch.Tensor:
    return torch.tensor([[0.0, math.log(math.expm1(c))] for c in ces], dtype=torch.float64)


FIT = [0.4, 1.5, 2.5, 0.9]
DROP = [3.0, 0.2, 1.0, 2.0]
REF = [1.0, 1.0, 0.5, 1.5]
IDENT = [True, False, True, False]
LABELS = torch.zeros(4, dtype=torch.long)
ROWS = [i for i, k in enumerate(IDENT) if k]


def repair(fit=FIT, drop=DROP, ref=REF, ident=IDENT, **kwargs) -> torch.Tensor:
    identified = torch.tensor(ident)
    drop_logits = None if drop is None else logits_for([drop[i] for i, k in enumerate(ident) if k])
    return rem_repair_loss(logits_for(fit), LABELS, identified, t(ref), drop_logits, **kwargs)


def test_logits_for_gives_the_ce_asked_for():
    assert per_sample_ce(logits_for(FIT), LABELS).tolist() == pytest.approx(FIT, rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_rem_repair_loss_research_code_form(beta):
    got = repair(beta=beta, retain_loss="npo")
    per_sample = [npo_by_hand(f, r, beta) - (npo_by_hand(d, r, beta) if i else 0.0) for f, d, r, i in zip(FIT, DROP, REF, IDENT)]
    assert float(got) == pytest.approx(sum(per_sample) / 4, rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_rem_repair_loss_with_ce_on_the_retain_rows(beta):
    """retain_loss="ce": retain rows contribute their plain CE, identified rows keep NPO's fit and removal."""
    got = repair(beta=beta, retain_loss="ce")
    per_sample = [npo_by_hand(f, r, beta) - npo_by_hand(d, r, beta) if i else f for f, d, r, i in zip(FIT, DROP, REF, IDENT)]
    assert float(got) == pytest.approx(sum(per_sample) / 4, rel=1e-6)


def test_rem_repair_loss_with_ce_never_reads_the_retain_rows_reference():
    base = repair(retain_loss="ce")
    other_ref = [r if i else 99.0 for r, i in zip(REF, IDENT)]
    assert float(repair(ref=other_ref, retain_loss="ce")) == float(base)
    assert float(repair(ref=other_ref, retain_loss="npo")) != float(repair(retain_loss="npo"))


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_rem_repair_loss_without_continued_removal(beta):
    got = repair(drop=None, beta=beta, retain_loss="npo")
    expected = sum(npo_by_hand(f, r, beta) for f, r in zip(FIT, REF)) / 4
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_rem_repair_loss_without_redirect_fit(beta):
    got = repair(beta=beta, retain_loss="npo", fit_identified=False)
    per_sample = [-npo_by_hand(d, r, beta) if i else npo_by_hand(f, r, beta) for f, d, r, i in zip(FIT, DROP, REF, IDENT)]
    assert float(got) == pytest.approx(sum(per_sample) / 4, rel=1e-6)


def test_rem_repair_loss_both_ablations_averages_over_the_whole_batch():
    got = repair(drop=None, retain_loss="npo", fit_identified=False)
    expected = (npo_by_hand(FIT[1], REF[1], 1.0) + npo_by_hand(FIT[3], REF[3], 1.0)) / 4  # divided by 4, not 2
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_rem_repair_loss_with_nothing_identified_is_the_mean_fit_term():
    none = [False] * 4
    expected = sum(npo_by_hand(f, r, 1.0) for f, r in zip(FIT, REF)) / 4
    assert float(repair(ident=none, retain_loss="npo")) == pytest.approx(expected, rel=1e-6)
    assert float(repair(ident=none, retain_loss="ce")) == pytest.approx(sum(FIT) / 4, rel=1e-6)


def test_rem_repair_loss_removes_while_preferred_only_rows_still_predicted():
    """removal="while-preferred": an identified row whose drop view no longer predicts its label
    (row 0, CE 3.0: with two classes p(label) < 1/2) keeps its fit term and loses its removal term;
    row 2 (CE 0.5: p = 0.61) is still predicted and still removed."""
    drop = [3.0, 0.2, 0.5, 2.0]
    got = repair(drop=drop, retain_loss="npo", removal="while-preferred")
    still_predicted = [i and d < math.log(2) for d, i in zip(drop, IDENT)]
    assert still_predicted == [False, False, True, False]
    per_sample = [npo_by_hand(f, r, 1.0) - (npo_by_hand(d, r, 1.0) if k else 0.0) for f, d, r, k in zip(FIT, drop, REF, still_predicted)]
    assert float(got) == pytest.approx(sum(per_sample) / 4, rel=1e-6)
    drop_logits = logits_for([drop[i] for i in ROWS]).requires_grad_(True)
    rem_repair_loss(logits_for(FIT), LABELS, torch.tensor(IDENT), t(REF), drop_logits, removal="while-preferred").backward()
    assert drop_logits.grad[0].abs().sum() == 0  # row 0 is no longer pushed
    assert drop_logits.grad[1].abs().sum() > 0  # row 2 is


def test_rem_repair_loss_gradients_push_the_right_way():
    """Fit CE is pulled down for every sample; drop CE is pushed up only for identified ones."""
    fit = logits_for(FIT).requires_grad_(True)
    drop = logits_for([DROP[i] for i in ROWS]).requires_grad_(True)
    rem_repair_loss(fit, LABELS, torch.tensor(IDENT), t(REF), drop, retain_loss="npo").backward()
    assert (fit.grad[:, 0] < 0).all()  # descending raises the label's logit: CE down
    assert (drop.grad[:, 0] > 0).all()  # descending lowers the label's logit: drop CE up


def test_rem_repair_loss_refuses_drop_rows_that_do_not_match_the_identified_rows():
    with pytest.raises(ValueError, match="identified rows"):
        rem_repair_loss(logits_for(FIT), LABELS, torch.tensor(IDENT), t(REF), logits_for(DROP))


@pytest.mark.parametrize(
    ("retain", "forget", "gamma", "expected"),
    [
        (0.9, 0.5, 0.2, 0.45),
        (0.9, 0.1, 0.2, 0.72),  # below gamma counts as gamma
        (0.9, 0.2, 0.2, 0.72),
        (0.8, 0.0, 0.0, 0.8),
        (1.0, 1.0, 0.2, 0.0),
        (0.0, 0.0, 0.2, 0.0),
        (0.6, 0.35, 0.3, 0.39),
    ],
)
def test_selection_proxy_examples(retain, forget, gamma, expected):
    assert selection_proxy(retain, forget, gamma) == pytest.approx(expected)


def test_selection_proxy_prefers_lower_forget_then_higher_retain():
    assert selection_proxy(0.8, 0.3, 0.2) > selection_proxy(0.8, 0.6, 0.2)
    assert selection_proxy(0.85, 0.05, 0.2) > selection_proxy(0.8, 0.0, 0.2)


@pytest.mark.parametrize("weight", [1.0, 0.4])
def test_rem_repair_loss_weights_the_identified_rows_terms(weight):
    """identified_weight scales the identified rows' fit and removal terms, never the retain rows'."""
    got = repair(retain_loss="npo", identified_weight=weight)
    per_sample = [
        weight * (npo_by_hand(f, r, 1.0) - npo_by_hand(d, r, 1.0)) if i else npo_by_hand(f, r, 1.0) for f, d, r, i in zip(FIT, DROP, REF, IDENT)
    ]
    assert float(got) == pytest.approx(sum(per_sample) / 4, rel=1e-6)


def test_proxy_standard_error_is_the_accuracy_error_scaled_like_the_proxy():
    assert proxy_standard_error(0.5, 0.0, 0.2, 100) == pytest.approx(0.05 * 0.8)  # forget below gamma: x (1 - gamma)
    assert proxy_standard_error(0.5, 0.5, 0.2, 100) == pytest.approx(0.05 * 0.5)
    assert proxy_standard_error(0.5, 0.0, 0.2, 10_000) == pytest.approx(0.005 * 0.8)  # 100x the samples: a tenth
    assert proxy_standard_error(1.0, 0.0, 0.2, 50) == 0.0 and proxy_standard_error(0.5, 0.0, 0.2, 0) == 0.0


def test_kept_by_rule_best_is_the_earliest_highest_proxy():
    assert kept_by_rule([0.04, 0.42, 0.38, 0.42, 0.30], [0.05] * 5, "best") == 1


def test_kept_by_rule_latest_tied_is_the_latest_iterate_within_one_se_of_the_best():
    proxies = [0.04, 0.42, 0.38, 0.30, 0.39, 0.33]
    assert kept_by_rule(proxies, [0.05] * 6, "latest-tied") == 4  # 0.39 >= 0.42 - 0.05; 0.33 is not
    assert kept_by_rule(proxies, [0.001] * 6, "latest-tied") == 1  # a precise proxy: the best itself
    assert kept_by_rule([0.30, 0.42, 0.20], [0.2, 0.01, 0.2], "latest-tied") == 1  # the best's own error decides
    assert kept_by_rule([0.41, 0.40, 0.42], [0.05] * 3, "latest-tied") == 2  # never before the best
