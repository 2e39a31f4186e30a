"""lngraph: matching abdominal lymph nodes across follow-up CT scans.

Layers, in the direction data flows: :mod:`lngraph.io` (files, coordinates, the cohort
contract) → :mod:`lngraph.data` (crops, views, pair graphs) → :mod:`lngraph.models` (built from
:mod:`lngraph.nn`) → :mod:`lngraph.matching` → outputs judged by :mod:`lngraph.metrics`.
"""

__version__ = "0.1.0"
