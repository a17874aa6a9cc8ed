"""Unlearning methods, one module each; importing this package registers them all."""

from remcli.unlearning.methods import (  # noqa: F401
    badteacher,
    cf_k,
    eu_k,
    finetune,
    ga,
    neggrad_plus,
    npo,
    potion,
    rem,
    retrain,
    salun,
    scrub,
    ssd,
)
