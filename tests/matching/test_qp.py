import numpy as np
import pytest
import torch
from scipy.optimize import LinearConstraint, linprog, minimize

from lngraph.matching.qp import (
    convexify,
    make_substochastic,
    project_capped_simplex,
    solve_assignment_qp,
)


def _constraints(n1, n2):
    """Row and column sums of a row-major vec as a matrix."""
    a = np.zeros((n1 + n2, n1 * n2))
    for i in range(n1):
        a[i, i * n2:(i + 1) * n2] = 1
    for j in range(n2):
        a[n1 + j, j::n2] = 1
    return a


def _instance(n1, n2, seed, strength=0.9):
    rng = np.random.default_rng(seed)
    k = rng.uniform(0, 1, (n1 * n2, n1 * n2))
    quad = convexify(torch.tensor((k + k.T) / 2), strength)
    lin = torch.tensor(rng.uniform(-1, 2, (n1, n2)))
    return quad, lin


def _assert_substochastic(x):
    assert (x >= 0).all()
    assert (x.sum(0) <= 1 + 1e-9).all() and (x.sum(1) <= 1 + 1e-9).all()


def test_capped_simplex_projection_exact_values():
    v = torch.tensor([[0.2, 0.3], [0.8, 0.6], [-1.0, 2.0], [0.5, -0.2], [0.5, 0.5]])
    expected = torch.tensor([[0.2, 0.3], [0.6, 0.4], [0.0, 1.0], [0.5, 0.0], [0.5, 0.5]])
    assert torch.allclose(project_capped_simplex(v), expected)


def test_capped_simplex_projection_is_the_nearest_feasible_point():
    rng = np.random.default_rng(0)
    v = rng.normal(0.3, 1.0, 5)
    res = minimize(lambda x: ((x - v) ** 2).sum(), np.zeros(5), method="SLSQP",
                   bounds=[(0, None)] * 5,
                   constraints=[LinearConstraint(np.ones((1, 5)), -np.inf, 1)])
    got = project_capped_simplex(torch.tensor(v)[None])[0].numpy()
    assert np.allclose(got, res.x, atol=1e-5)


def test_make_substochastic_is_feasible_and_keeps_feasible_input():
    x = torch.tensor([[0.9, 0.9, 0.0], [0.5, 0.2, 0.1]], dtype=torch.float64)
    _assert_substochastic(make_substochastic(x))
    inside = torch.tensor([[0.5, 0.2], [0.3, 0.1]], dtype=torch.float64)
    assert torch.equal(make_substochastic(inside), inside)


def test_convexify_spectrum():
    quad, _ = _instance(4, 5, seed=0, strength=0.7)
    eig = torch.linalg.eigvalsh(quad)
    assert eig.min() >= 0.3 - 1e-9 and eig.max() <= 1.7 + 1e-9


@pytest.mark.parametrize("n1,n2,seed", [(3, 4, 0), (5, 5, 1), (6, 3, 2), (2, 7, 3)])
def test_qp_matches_scipy(n1, n2, seed):
    quad, lin = _instance(n1, n2, seed)
    x = solve_assignment_qp(quad, lin, max_iter=2000, tol=1e-8)
    _assert_substochastic(x)
    q, u = quad.numpy(), lin.numpy().ravel()
    ref = minimize(lambda v: 0.5 * v @ q @ v - u @ v, np.zeros(n1 * n2),
                   jac=lambda v: q @ v - u, method="SLSQP", bounds=[(0, None)] * (n1 * n2),
                   constraints=[LinearConstraint(_constraints(n1, n2), -np.inf, 1)],
                   options={"ftol": 1e-12, "maxiter": 500})
    assert ref.success
    v = x.numpy().ravel()
    assert 0.5 * v @ q @ v - u @ v == pytest.approx(ref.fun, abs=1e-5)
    assert np.allclose(x.numpy().ravel(), ref.x, atol=1e-3)


def test_linear_special_case_matches_linprog():
    rng = np.random.default_rng(4)
    n1, n2 = 4, 6
    lin = torch.tensor(rng.uniform(-1, 2, (n1, n2)))
    x = solve_assignment_qp(torch.zeros(n1 * n2, n1 * n2, dtype=torch.float64), lin,
                            max_iter=5000, tol=1e-9)
    _assert_substochastic(x)
    ref = linprog(-lin.numpy().ravel(), A_ub=_constraints(n1, n2), b_ub=np.ones(n1 + n2),
                  bounds=(0, None))
    assert float((lin * x).sum()) == pytest.approx(-ref.fun, abs=1e-4)


def test_solution_is_substochastic_on_a_larger_instance():
    quad, lin = _instance(9, 12, seed=5)
    x = solve_assignment_qp(quad, 3 * lin, max_iter=50)
    assert x.shape == (9, 12)
    _assert_substochastic(x)


def test_gradient_flows_and_matches_finite_differences():
    quad, lin = _instance(3, 4, seed=6, strength=0.5)
    weights = torch.tensor(np.random.default_rng(7).normal(size=(3, 4)))
    lin = lin.clone().requires_grad_()
    strength = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    base = quad - torch.eye(12, dtype=torch.float64)  # -strength * K~ at strength 0.5

    def loss(u, s):
        q = torch.eye(12, dtype=torch.float64) + base * (s / 0.5)
        return (solve_assignment_qp(q, u, max_iter=200, tol=0.0) * weights).sum()

    loss(lin, strength).backward()
    assert lin.grad.abs().sum() > 0 and strength.grad.abs() > 0
    assert torch.isfinite(lin.grad).all()
    direction = torch.tensor(np.random.default_rng(8).normal(size=(3, 4)))
    eps = 1e-6
    with torch.no_grad():
        numeric = (loss(lin + eps * direction, strength)
                   - loss(lin - eps * direction, strength)) / (2 * eps)
    assert float((lin.grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-3,
                                                                abs=1e-6)


def test_empty_and_bad_shapes():
    assert solve_assignment_qp(torch.zeros(0, 0), torch.zeros(0, 3)).shape == (0, 3)
    with pytest.raises(ValueError, match=r"quad must be \[6, 6\]"):
        solve_assignment_qp(torch.eye(5), torch.zeros(2, 3))
