"""``asymmetric`` behind the Method interface: registry, fit/predict, needs_images."""

import numpy as np

from lngraph.baselines import REGISTRY
from lngraph.io.matches import PairPrediction
from lngraph.models import preset
from lngraph.train import MatcherMethod

GEOMETRY = preset("lite").with_values({"model.geometry_only": True, "optim.lr": 3e-3})


def test_registered():
    assert REGISTRY["matcher"] is MatcherMethod
    assert MatcherMethod.learned


def test_needs_images_follows_the_config():
    assert MatcherMethod().needs_images
    assert not MatcherMethod(GEOMETRY).needs_images


def test_fit_and_predict(geometry_cohort, tmp_path):
    train = geometry_cohort.subset(geometry_cohort.patients[:6])
    val = geometry_cohort.subset(geometry_cohort.patients[6:8])
    method = MatcherMethod(GEOMETRY, tmp_path / "run", max_epochs=2)
    assert method.fit(train, val) is method
    assert method.result.checkpoint == tmp_path / "run" / "model.ckpt"
    assert method.result.extra["val_patients"] == geometry_cohort.patients[6:8]
    pair = geometry_cohort.pairs(patients=geometry_cohort.patients[9:10])[0]
    pred = method.predict(pair)
    assert isinstance(pred, PairPrediction)
    assert (pred.n_src, pred.n_dst) == (len(pair.src.nodes), len(pair.dst.nodes))
    again = MatcherMethod.from_checkpoint(method.result.checkpoint).predict(pair)
    assert np.array_equal(pred.matches, again.matches)
    assert "matcher" not in repr(method) and "config='lite'" in repr(method)


def test_fit_without_validation_cohort_carves_one(geometry_cohort):
    method = MatcherMethod(GEOMETRY, max_epochs=1)
    method.fit(geometry_cohort.subset(geometry_cohort.patients[:5]))
    assert len(method.result.extra["val_patients"]) == 1
    assert len(method.result.extra["train_patients"]) == 4
    assert method.out_dir.is_dir()


def test_extra_train_patients_join_training_only(geometry_cohort, tmp_path):
    """``extra_train``: another cohort's patients are trained on; validation stays on the
    fit's own patients; shared patient ids are refused."""
    import pytest

    from lngraph.io.cohort import Cohort, write_cohort

    extra_scans = [s for s in geometry_cohort.subset(geometry_cohort.patients[10:14])
                   .scans.values()]
    renamed = [type(s)(f"X{s.patient_id}", f"X{s.scan_id}", s.timepoint, s.image, s.nodes)
               for s in extra_scans]
    extra = write_cohort(tmp_path / "extra", Cohort(renamed))
    train = geometry_cohort.subset(geometry_cohort.patients[:4])
    val = geometry_cohort.subset(geometry_cohort.patients[4:6])
    method = MatcherMethod(GEOMETRY, tmp_path / "run", max_epochs=1, extra_train=extra)
    method.fit(train, val)
    assert method.result.extra["train_patients"] == sorted(
        [*train.patients, *[f"X{p}" for p in geometry_cohort.patients[10:14]]])
    assert method.result.extra["val_patients"] == val.patients
    clash = write_cohort(tmp_path / "clash", train)
    with pytest.raises(ValueError, match="also in the cohort being fitted"):
        MatcherMethod(GEOMETRY, max_epochs=1, extra_train=clash).fit(train, val)
