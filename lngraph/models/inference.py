"""Matching scan pairs with a trained matcher, without any
training code: :func:`~lngraph.models.checkpoint.load_checkpoint` reads a checkpoint,
:func:`matcher_graphs` builds the pair
graphs a config needs (crops, alignment shifts), :func:`predict_pairs` matches pairs in batches.

This is the path of ``lngraph match``, ``lngraph evaluate --model`` and the Python API; it
imports torch, PyTorch Geometric and lngraph's data and model packages, never Lightning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from lngraph.data.geometry import AlignmentParams
from lngraph.data.graph import pair_graphs
from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.matching.batched import BatchedMatches
from lngraph.models.build import Matcher
from lngraph.models.config import MatcherConfig


def to_predictions(matches: BatchedMatches) -> list[PairPrediction]:
    """One :class:`~lngraph.io.matches.PairPrediction` per pair of a batched assignment."""
    return [PairPrediction(n_src, n_dst, pairs, scores)
            for pairs, scores, n_src, n_dst in matches.pairs()]


def alignment_params(config: MatcherConfig) -> AlignmentParams | None:
    """The alignment settings the config's distance term needs (``None`` without the
    position prior)."""
    m = config.model
    if not m.position_prior:
        return None
    return AlignmentParams(gate_mm=m.position_gate_mm, local_scale_mm=m.position_local_mm,
                           rigid=m.position_rigid, rotation_search=m.position_search)


def matcher_graphs(pairs: Sequence[ScanPair], config: MatcherConfig, *,
                   cache_dir: str | os.PathLike | None = None, progress: bool = False
                   ) -> list[HeteroData]:
    """The pair graphs ``config``'s matcher reads: crops (unless geometry-only) and
    alignment shifts (with the position prior), through the cache folder ``cache_dir``
    (``None``: computed, not cached).

    Raises:
        InputError: a scan needs crops but has no image, or its image is unreadable.
    """
    return pair_graphs(pairs, crops=None if config.model.geometry_only else config.crops,
                       alignment=alignment_params(config), cache_dir=cache_dir,
                       progress=progress)


def predict_graphs(model: Matcher, graphs: Sequence[HeteroData], *,
                   batch_size: int | None = None, threshold: float | None = None,
                   progress: bool = False, calibrated: bool = True) -> list[PairPrediction]:
    """The model's prediction of each pair graph, in order, in batches of ``batch_size``
    graphs (default the config's ``optim.batch_size``); evaluation mode and no gradients, on
    the model's device; the model's training mode is restored afterwards. ``threshold``
    replaces the config's decision threshold (:meth:`GraphMatcher.match`; it applies to the
    decision score). The scores are the calibrated confidences
    (:func:`~lngraph.models.asymmetric_matcher.confident_matches`), or with
    ``calibrated=False`` the decision scores themselves (what calibration fits on); the
    matches are the same either way."""
    if not graphs:
        return []
    device = next(model.parameters()).device
    loader = DataLoader(list(graphs), batch_size=batch_size or model.config.optim.batch_size,
                        shuffle=False)
    predictions: list[PairPrediction] = []
    for batch in tqdm(loader, desc="matching", unit="batch", disable=not progress):
        predictions += to_predictions(model.match(batch.to(device), threshold,
                                                  calibrated=calibrated))
    return predictions


def predict_pairs(model: Matcher, pairs: Sequence[ScanPair], *,
                  cache_dir: str | os.PathLike | None = None, progress: bool = False,
                  batch_size: int | None = None, threshold: float | None = None,
                  calibrated: bool = True) -> list[PairPrediction]:
    """The model's :class:`~lngraph.io.matches.PairPrediction` for each pair, in order
    (:func:`matcher_graphs`, then :func:`predict_graphs`; ``calibrated`` as there).

    Raises:
        InputError: a scan needs crops but has no image, or its image is unreadable.
    """
    pairs = list(pairs)
    graphs = matcher_graphs(pairs, model.config, cache_dir=cache_dir, progress=progress)
    return predict_graphs(model, graphs, batch_size=batch_size, threshold=threshold,
                          progress=progress, calibrated=calibrated)
