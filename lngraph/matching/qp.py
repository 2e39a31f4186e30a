r"""A differentiable solver for convex quadratic programs over partial assignment matrices.

Relaxing a graph-matching problem (Lawler's QAP) to the *doubly sub-stochastic* polytope

.. math::
    \mathcal{P} = \{X \in \mathbb{R}^{n_1 \times n_2} : X \ge 0,\ X\mathbf{1} \le \mathbf{1},\
    X^\top \mathbf{1} \le \mathbf{1}\}

(the convex hull of partial one-to-one matchings) and convexifying it gives

.. math::
    \min_{x = \mathrm{vec}(X) \in \mathcal{P}} \ \tfrac12 x^\top Q x - u^\top x,
    \qquad Q \succeq 0.

:func:`solve_assignment_qp` solves it by ADMM with the splitting :math:`x = z_r = z_c`,
:math:`z_r` in the row-capped set and :math:`z_c` in the column-capped set; each of those is an
exact, closed-form projection (a capped-simplex projection per row or column), and the
:math:`x`-update is one product with an inverse computed once (by Cholesky). Every step is a torch
operation, so the solution is differentiable in :math:`Q` and :math:`u` by unrolling the
iterations (no ``qpth``/``cvxpy``; docs/design.md, *Baselines*). :func:`convexify` turns a symmetric
affinity matrix into a positive-definite :math:`Q` (Learnable Graph Matching, He et al.,
CVPR 2021, likewise relaxes the QAP to a convex QP and differentiates through its solution).

This module owns the solver and the polytope projections; it knows no model or trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def project_capped_simplex(v: Tensor) -> Tensor:
    r"""Euclidean projection of each row of ``v`` onto :math:`\{x \ge 0,\ \sum_k x_k \le 1\}`.

    Rows whose positive part already sums to at most 1 are clamped at 0; the others are
    projected onto the probability simplex by the sort-and-threshold rule.

    Shapes:
        ``v``: ``[R, K]`` → ``[R, K]``.
    """
    if v.shape[-1] == 0:
        return v
    clamped = v.clamp(min=0)
    inside = clamped.sum(-1, keepdim=True) <= 1
    sorted_v = torch.sort(v, dim=-1, descending=True).values
    rank = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    excess = sorted_v.cumsum(-1) - 1
    support = (sorted_v - excess / rank > 0).sum(-1, keepdim=True).clamp(min=1)
    theta = excess.gather(-1, support - 1) / support.to(v.dtype)
    return torch.where(inside, clamped, (v - theta).clamp(min=0))


def make_substochastic(x: Tensor) -> Tensor:
    """Scale rows then columns of a non-negative ``[n1, n2]`` matrix so that every row and column
    sums to at most 1 (scaling columns down cannot raise a row sum, so both hold exactly)."""
    x = x.clamp(min=0)
    x = x / x.sum(1, keepdim=True).clamp(min=1)
    return x / x.sum(0, keepdim=True).clamp(min=1)


def convexify(affinity: Tensor, strength: float | Tensor = 0.5) -> Tensor:
    r"""The positive-definite :math:`Q = I - s\,\tilde K` of a symmetric affinity :math:`K`.

    :math:`\tilde K = K / \max(1, \max_i \sum_j |K_{ij}|)` has spectral radius at most 1
    (Gershgorin), so for a strength :math:`s \in [0, 1)` the eigenvalues of :math:`Q` lie in
    :math:`[1 - s, 1 + s]`. Then :math:`\tfrac12 x^\top Q x - u^\top x` is the QAP objective
    :math:`\tfrac{s}{2} x^\top \tilde K x + u^\top x`, negated, plus
    :math:`\tfrac12 \lVert x \rVert^2` — on a binary :math:`x` a price of 1/2 per match that the
    node affinities :math:`u` must pay; with :math:`s = 0` the solution is the Euclidean
    projection of :math:`u` onto the polytope.

    Args:
        affinity: ``[n, n]`` symmetric edge affinities (zero diagonal in the Lawler QAP).
        strength: :math:`s`, a float or a 0-d tensor (differentiable) in ``[0, 1)``.
    """
    bound = affinity.abs().sum(-1).max() if affinity.numel() else affinity.new_zeros(())
    eye = torch.eye(affinity.shape[-1], dtype=affinity.dtype, device=affinity.device)
    return eye - strength * affinity / bound.clamp(min=1.0)


def solve_assignment_qp(quad: Tensor, lin: Tensor, *, rho: float | None = None,
                        max_iter: int = 300, tol: float = 1e-5) -> Tensor:
    r"""Minimise :math:`\tfrac12 x^\top Q x - u^\top x` over the doubly sub-stochastic polytope.

    ADMM on :math:`\min f(x) + \iota_{R}(z_r) + \iota_{C}(z_c)` s.t. :math:`x = z_r = z_c`
    (:math:`R`: rows capped, :math:`C`: columns capped, both non-negative):

    .. math::
        x &\leftarrow (Q + 2\rho I)^{-1}\big(u + \rho(z_r - y_r) + \rho(z_c - y_c)\big) \\
        z_r &\leftarrow \Pi_R(x + y_r), \quad z_c \leftarrow \Pi_C(x + y_c) \\
        y_r &\leftarrow y_r + x - z_r, \quad y_c \leftarrow y_c + x - z_c

    stopping when the primal and dual residuals fall under ``tol`` (scaled by
    :math:`\sqrt{n_1 n_2}`). The result is made exactly feasible by :func:`make_substochastic`.
    Differentiable in ``quad`` and ``lin`` by unrolling.

    Args:
        quad: ``[n1*n2, n1*n2]`` symmetric positive semi-definite :math:`Q` (row-major vec).
        lin: ``[n1, n2]`` linear term :math:`u`.
        rho: ADMM penalty; default the mean diagonal of :math:`Q` (at least 0.1).
        max_iter: iteration cap.
        tol: residual tolerance.

    Returns:
        ``[n1, n2]`` doubly sub-stochastic solution.
    """
    n1, n2 = lin.shape
    if n1 == 0 or n2 == 0:
        return lin.new_zeros((n1, n2))
    if quad.shape != (n1 * n2, n1 * n2):
        raise ValueError(f"quad must be [{n1 * n2}, {n1 * n2}] for lin {tuple(lin.shape)}, "
                         f"got {tuple(quad.shape)}")
    if rho is None:
        rho = max(float(quad.diagonal().mean().detach()), 0.1)
    eye = torch.eye(n1 * n2, dtype=lin.dtype, device=lin.device)
    # One inverse up front: unrolled matrix products differentiate far cheaper than unrolled
    # triangular solves.
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(quad + 2 * rho * eye))
    u = lin.reshape(-1, 1)
    z_r = z_c = lin.new_zeros((n1 * n2, 1))
    y_r = y_c = lin.new_zeros((n1 * n2, 1))
    scale = (n1 * n2) ** 0.5
    for _ in range(max_iter):
        x = inverse @ (u + rho * (z_r - y_r + z_c - y_c))
        new_r = project_capped_simplex((x + y_r).reshape(n1, n2)).reshape(-1, 1)
        new_c = project_capped_simplex((x + y_c).reshape(n1, n2).T).T.reshape(-1, 1)
        dual = rho * (torch.linalg.vector_norm(new_r - z_r) + torch.linalg.vector_norm(new_c - z_c))
        z_r, z_c = new_r, new_c
        y_r, y_c = y_r + x - z_r, y_c + x - z_c
        primal = torch.linalg.vector_norm(x - z_r) + torch.linalg.vector_norm(x - z_c)
        if max(float(primal.detach()), float(dual.detach())) < tol * scale:
            break
    return make_substochastic((0.5 * (z_r + z_c)).reshape(n1, n2))
