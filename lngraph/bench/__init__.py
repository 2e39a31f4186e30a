"""The leaderboard: every matching method on the same patient folds of a cohort.

* :mod:`lngraph.bench.registry` — :data:`BUILTIN_METHODS` (the built-in methods in leaderboard
  order), the user's methods (:func:`import_methods`), name resolution (:func:`method_names`)
  and construction (:func:`build_method`);
* :mod:`lngraph.bench.leaderboard` — the protocol, :func:`run_leaderboard`;
* :mod:`lngraph.bench.report` — the summary, Markdown, plot and CSV outputs.

Sits on top of :mod:`lngraph.baselines` and :mod:`lngraph.train` (the methods); only
:mod:`lngraph.cli` and the benchmark scripts import it.
"""

from lngraph.bench.leaderboard import QUICK_OPTIONS, run_leaderboard
from lngraph.bench.registry import (
    BUILTIN_METHODS,
    available_methods,
    build_method,
    import_methods,
    method_names,
)
from lngraph.bench.report import (
    METRICS,
    TIMINGS,
    markdown_table,
    summarize_leaderboard,
    write_leaderboard,
)

__all__ = [
    "BUILTIN_METHODS", "METRICS", "QUICK_OPTIONS", "TIMINGS", "available_methods",
    "build_method", "import_methods", "markdown_table", "method_names", "run_leaderboard",
    "summarize_leaderboard", "write_leaderboard",
]
