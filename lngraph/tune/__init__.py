"""Hyper-parameter search for the asymmetric matcher with Optuna (``lngraph tune``).

* :mod:`~lngraph.tune.search_space` — which config fields a trial samples, and their ranges;
* :mod:`~lngraph.tune.objective` — a trial: train on the training patients, score it on the
  validation patients (F1 of the matches plus the F1 of new and disappeared nodes), prune per
  epoch;
* :mod:`~lngraph.tune.study` — storages (SQLite, PostgreSQL/MySQL, journal file), worker
  processes sharing one study, resuming, and the report (best config YAML, plots).

Sits on top of :mod:`lngraph.train`.
"""

from lngraph.tune.objective import OBJECTIVE, PruningCallback, TuneObjective
from lngraph.tune.search_space import sample_config, search_space
from lngraph.tune.study import open_storage, open_study, optimize, write_report

__all__ = [
    "OBJECTIVE", "PruningCallback", "TuneObjective", "open_storage", "open_study", "optimize",
    "sample_config", "search_space", "write_report",
]
