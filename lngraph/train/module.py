r"""The Lightning module that trains a matcher (:func:`~lngraph.models.build_matcher`).

* **Training** minimises the model's weighted loss; each term is logged as ``train_<term>``
  (``train_total``, ``train_se``, ``train_te`` and ``train_assignment`` for the graph
  matcher, ``train_seag`` and ``train_scb`` for the asymmetric one).
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
  precisions because NLR and DLR alone reward leaving everything unmatched (docs/design.md,
  *Metrics*); a
  class without ground truth in the validation pairs (no new or no disappeared node) is left
  out of the mean, and an undefined :math:`F_1` counts 0, so the score is always finite.
  Early stopping and checkpoint selection maximise it. With ``protocol.calibrate_fusion``
  (the asymmetric matcher's fused score, no SCB, one process) the epoch is scored as it will
  be used: the fusion weights are fitted on the epoch's validation pairs
  (:func:`~lngraph.train.calibrate.fit_logistic`), and with ``protocol.calibrate_threshold``
  the threshold too, before the metrics are computed; the model's own weights are not
  touched (:func:`~lngraph.train.fit.fit_matcher` fits them once training has picked its
  epoch). Validation pairs too one-sided for a step
  (:func:`~lngraph.train.calibrate.fusion_problem`,
  :func:`~lngraph.train.calibrate.threshold_problem`) keep its default, as ``fit_matcher``
  does: the trained fusion weights, the config's threshold.
* **Optimiser**: Adam with the config's ``optim.lr`` and ``optim.weight_decay``; the asymmetric
  matcher's fusion weights and bias use ``optim.fusion_lr`` and no weight decay. With
  ``optim.schedule: cosine`` every learning rate decays to 0 along a cosine over
  ``optim.max_epochs`` (stepped once per epoch).

The module finds the :class:`~lngraph.io.cohort.ScanPair` of a validation graph through its
data module's ``pair(src_scan, dst_scan)``.
"""

from __future__ import annotations

import contextlib
import math

import lightning as L
import numpy as np
import torch
from torch_geometric.data import HeteroData

from lngraph.matching.batched import batched_assignment
from lngraph.metrics import pair_counts, summarize
from lngraph.metrics.matching import COUNT_FIELDS, PairCounts
from lngraph.models import MatcherConfig, build_matcher, to_predictions
from lngraph.train.calibrate import (
    choose_threshold,
    fit_logistic,
    fusion_data,
    fusion_problem,
    threshold_problem,
)
from lngraph.train.selection import selection_score

#: Metrics logged each validation epoch (``val_`` + key).
VAL_METRICS = ("precision", "recall", "f1", "nlr", "dlr", "new_precision",
               "disappeared_precision")


def pooled_metrics(counts: torch.Tensor) -> dict:
    """:func:`~lngraph.metrics.summarize` of pooled :data:`COUNT_FIELDS` counts (centre-point
    metrics are not part of it)."""
    pooled = PairCounts(**dict(zip(COUNT_FIELDS, counts.long().tolist(), strict=True)),
                        distances_mm=np.zeros(0), radii_mm=np.zeros(0))
    return {k: summarize([pooled])[k] for k in VAL_METRICS}


class MatcherModule(L.LightningModule):
    """Wraps the matcher built from ``config`` (a config or its dict)."""

    def __init__(self, config: MatcherConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = MatcherConfig.from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model = build_matcher(config)
        self._val_counts = torch.zeros(len(COUNT_FIELDS), dtype=torch.float64)

    def forward(self, batch: HeteroData):
        return self.model(batch)

    def _log_losses(self, batch: HeteroData, out, stage: str) -> torch.Tensor:
        losses = self.model.loss(batch, out)
        self.log_dict({f"{stage}_{k}": v.detach() for k, v in losses.items()},
                      batch_size=batch.num_graphs, on_step=False, on_epoch=True,
                      prog_bar=False, sync_dist=stage == "val")
        return losses["total"]

    def training_step(self, batch: HeteroData, batch_idx: int) -> torch.Tensor:
        return self._log_losses(batch, self.model(batch), "train")

    def _calibrating(self) -> bool:
        """Whether validation scores the epoch after fitting the fusion on it (module
        docstring): ``calibrate_fusion`` with a fused score, no SCB, one process."""
        c = self.config
        return (c.protocol.calibrate_fusion and c.model.fuses_scores and not self.model.use_scb
                and self.trainer.world_size == 1)

    def on_validation_epoch_start(self) -> None:
        self._val_counts = torch.zeros(len(COUNT_FIELDS), dtype=torch.float64)
        self._val_pairs, self._val_fusion = [], []

    def validation_step(self, batch: HeteroData, batch_idx: int) -> None:
        out = self.model(batch)
        self._log_losses(batch, out, "val")
        datamodule = self.trainer.datamodule
        if self._calibrating():
            self._val_pairs += [datamodule.pair(src, dst)
                                for src, dst in zip(batch.src_scan, batch.dst_scan, strict=True)]
            self._val_fusion += fusion_data(self.model, batch, out)
            return
        predictions = to_predictions(self.model.assign(out))
        for src, dst, pred in zip(batch.src_scan, batch.dst_scan, predictions, strict=True):
            counts = pair_counts(datamodule.pair(src, dst), pred)
            self._val_counts += torch.tensor([getattr(counts, k) for k in COUNT_FIELDS],
                                             dtype=torch.float64)

    def _calibrated_metrics(self) -> dict:
        """Validation metrics after fitting the fusion weights (and, with
        ``calibrate_threshold``, the threshold) on this epoch's validation pairs; the model
        itself is left as it is."""
        c = self.config
        w, b = self.model.fusion_weight.detach().double().cpu(), self.model.fusion_bias.item()
        if fusion_problem(self._val_pairs) is None:     # else keep the trained fusion
            with contextlib.suppress(ValueError):       # a fit that does not converge, too
                w, b = fit_logistic(self._val_fusion, self.model.fusion_weight,
                                    self.model.fusion_bias.item())
        predictions = [to_predictions(batched_assignment(torch.sigmoid(f @ w + b),
                                                         threshold=0.0))[0]
                       for f, _ in self._val_fusion]
        cohort = self.trainer.datamodule.cohort
        threshold = c.model.similarity_threshold
        if c.protocol.calibrate_threshold and threshold_problem(self._val_pairs) is None:
            return choose_threshold(predictions, self._val_pairs, cohort,
                                    current=threshold).metrics
        return choose_threshold(predictions, self._val_pairs, cohort, grid=(threshold,),
                                current=threshold).metrics

    def on_validation_epoch_end(self) -> None:
        if self._calibrating():
            metrics = self._calibrated_metrics() if self._val_fusion else pooled_metrics(
                self._val_counts)
        else:
            counts = self._val_counts.to(self.device)
            if self.trainer.world_size > 1:
                counts = self.all_gather(counts).reshape(-1, len(COUNT_FIELDS)).sum(0)
            metrics = pooled_metrics(counts.cpu())
        logged = {f"val_{k}": metrics[k] for k in VAL_METRICS if not math.isnan(metrics[k])}
        self.log_dict(logged)
        self.log("val_score", selection_score(metrics), prog_bar=True)

    def configure_optimizers(self):
        named = list(self.model.named_parameters())
        groups = [{"params": [p for n, p in named if not n.startswith("fusion_")]}]
        prior = [p for n, p in named if n.startswith("fusion_")]
        if prior:
            groups.append({"params": prior, "lr": self.config.optim.fusion_lr,
                           "weight_decay": 0.0})
        optimizer = torch.optim.Adam(groups, lr=self.config.optim.lr,
                                     weight_decay=self.config.optim.weight_decay)
        if self.config.optim.schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.config.optim.max_epochs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
