"""Parametrisation of synthesis tests over (case, family) pairs.

A Yosys run takes 5-20 s, so the default suite synthesises each case for one family only,
rotating through the families so every family is still exercised; the other pairs are marked
``slow`` (``make test-all`` runs them, and ``benchmarks/calibrate_estimator.py`` covers every
kind x folding x width x family).
"""

import pytest


def rotated(cases, families, ids=None):
    """``(case, family)`` parameters: case ``i`` runs on ``families[i % len(families)]`` in
    the default suite and on the other families under ``slow``. ``ids`` names the cases
    (default: ``str(case)``)."""
    families = list(families)
    names = list(ids) if ids is not None else [str(case) for case in cases]
    params = []
    for i, (case, name) in enumerate(zip(cases, names)):
        for j, family in enumerate(families):
            marks = () if j == i % len(families) else (pytest.mark.slow,)
            params.append(pytest.param(case, family, marks=marks, id=f"{name}-{family}"))
    return params
