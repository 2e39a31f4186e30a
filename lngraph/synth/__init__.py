"""Synthetic longitudinal abdominal CT cohorts with ground-truth lymph-node identities.

:func:`generate_cohort` writes a cohort folder (docs/design.md, *Cohort folder*) of patients with
2–3 scans each (or follow-up series of ``timepoints`` scans, :func:`simulate_series`):
a phantom abdomen (:mod:`~lngraph.synth.anatomy`, :mod:`~lngraph.synth.bowel`), lymph nodes
laid out like the NIH abdominal annotations (:mod:`~lngraph.synth.nodes`), follow-ups that
reposition, deform and change the patient (:mod:`~lngraph.synth.followup`), rendered by
:mod:`~lngraph.synth.phantom`. Difficulty presets live in :mod:`~lngraph.synth.presets`;
:mod:`~lngraph.synth.realism` holds the statistics compared with the real data;
:mod:`~lngraph.synth.motion` rotates scans of a cohort rigidly (patient repositioning).
:func:`generate_texture_cohort` (:mod:`~lngraph.synth.texture`) writes *real-texture* cohorts
instead: the phantom's nodes inserted into a real CT, two scans per patient.

Knows no learner: nothing here imports torch.
"""

from lngraph.synth.cohort import generate_cohort, parse_timepoints, patient_scans, simulate_series
from lngraph.synth.motion import random_rotation, rotate_cohort, rotate_scan
from lngraph.synth.phantom import PatientRenderer, PatientSim, simulate_patient
from lngraph.synth.presets import (
    DEFAULT,
    DEFAULT_GRID,
    EASY,
    HARD,
    PRESETS,
    ScanGrid,
    SynthPreset,
    get_preset,
)
from lngraph.synth.texture import (
    ScanEffects,
    TextureParams,
    TexturePatient,
    TextureSource,
    generate_texture_cohort,
    load_texture_source,
    render_texture_scan,
    simulate_texture_patient,
)

__all__ = [
    "DEFAULT", "DEFAULT_GRID", "EASY", "HARD", "PRESETS", "PatientRenderer", "PatientSim",
    "ScanEffects", "ScanGrid", "SynthPreset", "TextureParams", "TexturePatient", "TextureSource",
    "generate_cohort", "generate_texture_cohort", "get_preset", "load_texture_source",
    "parse_timepoints", "patient_scans", "random_rotation", "render_texture_scan",
    "rotate_cohort", "rotate_scan", "simulate_patient", "simulate_series",
    "simulate_texture_patient",
]
