"""Class-balanced logistic regression by L-BFGS: the fit behind the asymmetric matcher's fusion
calibration and the ``geometry_fusion`` baseline."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lngraph.nn.losses import class_balanced_bce


def fit_balanced_logistic(x: Tensor, y: Tensor, weight: Tensor | None = None, bias: float = 0.0,
                          l2: float = 1e-3) -> tuple[Tensor, float]:
    r"""Weights :math:`w` and bias :math:`c` of :math:`\sigma(w^\top x + c)` for 0/1 labels
    ``y [M]`` on features ``x [M, k]``: :func:`~lngraph.nn.losses.class_balanced_bce` plus
    ``l2``·:math:`\lVert w\rVert^2`, minimised by L-BFGS in float64 on the CPU from ``weight``
    (default zero) and ``bias``.

    Raises:
        ValueError: the labels hold only one class (or none), or the fit is not finite.
    """
    x = torch.as_tensor(x).detach().double().cpu().reshape(len(y), -1)
    y = torch.as_tensor(y).detach().double().cpu().reshape(-1)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ValueError("the logistic fit needs matched and unmatched node pairs")
    w = (torch.zeros(x.shape[1], dtype=torch.float64) if weight is None
         else weight.detach().double().cpu().clone()).requires_grad_(True)
    b = torch.tensor(float(bias), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = class_balanced_bce(x @ w + b, y, logits=True) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    w, b = w.detach(), float(b.detach())
    if not (bool(torch.isfinite(w).all()) and math.isfinite(b)):
        raise ValueError("the logistic fit did not converge (non-finite weights)")
    return w, b
