r"""The Lightning module that trains :class:`~lngraph.models.AsymmetricMatcher`.

* **Training** minimises the model's weighted loss; each term is logged as ``train_<term>``
  (``train_total``, ``train_se``, ``train_te``, ``train_seag``, ``train_scb``).
* **Validation** logs the same terms as ``val_<term>``, runs the inference rule on every
  validation pair and scores it with :func:`lngraph.metrics.pair_counts`, pooled over the
  epoch (and over processes under DDP): ``val_precision``, ``val_recall``, ``val_f1``,
  ``val_nlr``, ``val_dlr``, ``val_new_precision``, ``val_disappeared_precision`` and the
  selection score

  .. math::
      \mathrm{val\_score} = F_1 + \tfrac{1}{2}\,(F_1^{new} + F_1^{dis}),
      \qquad F_1^{new} = \frac{2\,\mathrm{NLR}\cdot P^{new}}{\mathrm{NLR} + P^{new}},

  in :math:`[0, 2]` (:math:`F_1^{dis}` likewise from DLR and the disappeared precision):
  matching quality plus how well the unmatched nodes are found. The rates enter with their
  precisions because NLR and DLR alone reward leaving everything unmatched (DESIGN §5); a
  class without ground truth in the validation pairs (no new or no disappeared node) is left
  out of the mean, and an undefined :math:`F_1` counts 0, so the score is always finite.
  Early stopping and checkpoint selection maximise it.
* **Optimiser**: Adam with the config's ``lr`` and ``weight_decay``; the position prior's
  three scalars use ``position_prior_lr`` and no weight decay.

The module finds the :class:`~lngraph.io.cohort.ScanPair` of a validation graph through its
data module's ``pair(src_scan, dst_scan)``.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch_geometric.data import HeteroData

from lngraph.metrics import pair_counts, summarize
from lngraph.metrics.matching import COUNT_FIELDS, PairCounts
from lngraph.models import AsymmetricMatcher, MatcherConfig

#: Metrics logged each validation epoch (``val_`` + key).
VAL_METRICS = ("precision", "recall", "f1", "nlr", "dlr", "new_precision",
               "disappeared_precision")


def _unmatched_f1(rate: float, precision: float) -> float | None:
    """Harmonic mean of a detection rate and its precision; None without ground truth."""
    if math.isnan(rate):
        return None
    if math.isnan(precision) or rate + precision == 0:
        return 0.0
    return 2 * rate * precision / (rate + precision)


def selection_score(metrics: dict) -> float:
    """``F1 + mean(F1_new, F1_disappeared)`` over the classes with ground truth (module
    docstring)."""
    f1 = metrics["f1"]
    parts = [_unmatched_f1(metrics["nlr"], metrics["new_precision"]),
             _unmatched_f1(metrics["dlr"], metrics["disappeared_precision"])]
    parts = [p for p in parts if p is not None]
    return (0.0 if math.isnan(f1) else f1) + (float(np.mean(parts)) if parts else 0.0)


def pooled_metrics(counts: torch.Tensor) -> dict:
    """:func:`~lngraph.metrics.summarize` of pooled :data:`COUNT_FIELDS` counts (centre-point
    metrics are not part of it)."""
    pooled = PairCounts(**dict(zip(COUNT_FIELDS, counts.long().tolist(), strict=True)),
                        distances_mm=np.zeros(0), radii_mm=np.zeros(0))
    return {k: summarize([pooled])[k] for k in VAL_METRICS}


class MatcherModule(L.LightningModule):
    """Wraps an :class:`AsymmetricMatcher` built from ``config`` (a config or its dict)."""

    def __init__(self, config: MatcherConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = MatcherConfig.from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model = AsymmetricMatcher(config)
        self._val_counts = torch.zeros(len(COUNT_FIELDS), dtype=torch.float64)

    def forward(self, batch: HeteroData):
        return self.model(batch)

    def _losses(self, batch: HeteroData, stage: str) -> torch.Tensor:
        losses = self.model.loss(batch, self.model(batch))
        self.log_dict({f"{stage}_{k}": v.detach() for k, v in losses.items()},
                      batch_size=batch.num_graphs, on_step=False, on_epoch=True,
                      prog_bar=False, sync_dist=stage == "val")
        return losses["total"]

    def training_step(self, batch: HeteroData, batch_idx: int) -> torch.Tensor:
        return self._losses(batch, "train")

    def on_validation_epoch_start(self) -> None:
        self._val_counts = torch.zeros(len(COUNT_FIELDS), dtype=torch.float64)

    def validation_step(self, batch: HeteroData, batch_idx: int) -> None:
        self._losses(batch, "val")
        predictions = self.model.predict(batch)
        datamodule = self.trainer.datamodule
        for src, dst, pred in zip(batch.src_scan, batch.dst_scan, predictions, strict=True):
            counts = pair_counts(datamodule.pair(src, dst), pred)
            self._val_counts += torch.tensor([getattr(counts, k) for k in COUNT_FIELDS],
                                             dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        counts = self._val_counts.to(self.device)
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).reshape(-1, len(COUNT_FIELDS)).sum(0)
        metrics = pooled_metrics(counts.cpu())
        logged = {f"val_{k}": v for k, v in metrics.items() if not math.isnan(v)}
        self.log_dict(logged)
        self.log("val_score", selection_score(metrics), prog_bar=True)

    def configure_optimizers(self):
        named = list(self.model.named_parameters())
        groups = [{"params": [p for n, p in named if not n.startswith("fusion_")]}]
        prior = [p for n, p in named if n.startswith("fusion_")]
        if prior:
            groups.append({"params": prior, "lr": self.config.position_prior_lr,
                           "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)
