"""Matching scan pairs with a trained :class:`~lngraph.models.AsymmetricMatcher`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.models import AsymmetricMatcher, MatcherConfig
from lngraph.train.datamodule import pair_graphs


def predict_pairs(model: AsymmetricMatcher, config: MatcherConfig, pairs: Sequence[ScanPair],
                  *, cache_dir: str | os.PathLike | None = None, progress: bool = False,
                  batch_size: int | None = None, threshold: float | None = None
                  ) -> list[PairPrediction]:
    """The model's :class:`PairPrediction` for each pair, in order.

    Crops come from the cache folder ``cache_dir`` (``None``: computed, not cached) unless the
    config is geometry-only. Runs in eval mode without gradients on the model's device, in
    batches of ``batch_size`` pairs (default ``config.optim.batch_size``); the model's training
    mode is restored afterwards. ``threshold`` replaces the config's decision threshold
    (:meth:`~lngraph.models.AsymmetricMatcher.predict`).

    Raises:
        InputError: a scan needs crops but has no image, or its image is unreadable.
    """
    pairs = list(pairs)
    if not pairs:
        return []
    graphs = pair_graphs(pairs, config, cache_dir=cache_dir, progress=progress)
    device = next(model.parameters()).device
    loader = DataLoader(graphs, batch_size=batch_size or config.optim.batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    predictions: list[PairPrediction] = []
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="matching", unit="batch", disable=not progress):
                predictions += model.predict(batch.to(device), threshold)
    finally:
        model.train(was_training)
    return predictions
