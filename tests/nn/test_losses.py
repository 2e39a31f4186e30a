import math

import pytest
import torch

from lngraph.nn.losses import class_balanced_bce, se_loss, te_loss


def test_se_loss_exact_on_two_nodes():
    # Node 0's 3D feature is e1; its two views: e1 (cos 1) and e2 (cos 0). Node 1's views:
    # -e1 (cos -1) and e2 (cos 0). With τ = 0.5: node 0's loss is
    # -log((e^2 + e^0) / (e^2 + e^0 + e^-2 + e^0)).
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    feat3d = torch.stack([e1, e2])
    views = torch.stack([torch.stack([e1, e2]), torch.stack([-e1, e2])])
    node0 = -math.log((math.e**2 + 1) / (math.e**2 + 1 + math.e**-2 + 1))
    # Node 1 (feature e2): own views -e1 (0), e2 (1); node 0's views e1 (0), e2 (1).
    node1 = -math.log((1 + math.e**2) / (1 + math.e**2 + 1 + math.e**2))
    loss = se_loss(feat3d, views, tau=0.5)
    assert loss.item() == pytest.approx((node0 + node1) / 2, rel=1e-6)


def test_se_loss_negatives_stay_in_their_group_and_scale_is_ignored():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    feat3d = torch.stack([3 * e1, e2])
    views = torch.stack([torch.stack([e1, e2]), torch.stack([-e1, 5 * e2])])
    # Separate groups: no negatives, loss 0.
    assert se_loss(feat3d, views, torch.tensor([0, 1]), tau=0.5).item() == pytest.approx(0.0)
    assert se_loss(feat3d[:0], views[:0]).item() == 0.0


def test_te_loss_exact():
    # src a0 = e1, a1 = e2; dst b0 = e1, b1 = (e1 + e2)/√2; one match (0, 0); τ = 1.
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    src = torch.stack([e1, e2])
    dst = torch.stack([e1, (e1 + e2)])
    c = 1 / math.sqrt(2)
    forward = -math.log(math.e / (math.e + math.exp(c)))   # a0 against b0, b1
    backward = -math.log(math.e / (math.e + 1.0))          # b0 against a0, a1
    loss = te_loss(src, dst, torch.tensor([[0], [0]]), tau=1.0)
    assert loss.item() == pytest.approx(0.5 * (forward + backward), rel=1e-6)


def test_te_loss_ignores_other_pairs_and_handles_no_matches():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    src = torch.stack([e1, e2])
    dst = torch.stack([e1, e1])
    # Pair 0 = (src 0, dst 0), pair 1 = (src 1, dst 1): each match has no competitor, loss 0.
    loss = te_loss(src, dst, torch.tensor([[0], [0]]), torch.tensor([0, 1]),
                   torch.tensor([0, 1]), tau=0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    src.requires_grad_(True)
    empty = te_loss(src, dst, torch.zeros(2, 0, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad


def test_class_balanced_bce_exact():
    prob = torch.tensor([0.8, 0.4, 0.1, 0.3])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    pos = -(math.log(0.8) + math.log(0.4)) / 2
    neg = -(math.log(0.9) + math.log(0.7)) / 2
    assert class_balanced_bce(prob, target).item() == pytest.approx((pos + neg) / 2, rel=1e-6)
    # One positive among three negatives weighs as much as all the negatives together.
    prob = torch.tensor([0.5, 0.2, 0.2, 0.2])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    expected = (-math.log(0.5) - math.log(0.8)) / 2
    assert class_balanced_bce(prob, target).item() == pytest.approx(expected, rel=1e-6)


def test_class_balanced_bce_mask_logits_and_single_class():
    logits = torch.tensor([[2.0, -1.0], [0.0, 5.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, True], [False, False]])
    pos = math.log(1 + math.exp(-2.0))
    neg = math.log(1 + math.exp(-1.0))
    assert class_balanced_bce(logits, target, mask, logits=True).item() == \
        pytest.approx((pos + neg) / 2, rel=1e-6)
    only_neg = class_balanced_bce(torch.tensor([0.25]), torch.tensor([0.0]))
    assert only_neg.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert class_balanced_bce(torch.tensor([0.3]), torch.tensor([1.0]),
                              torch.tensor([False])).item() == 0.0
