"""Patient-level folds: partition, disjointness, determinism, validation carving, errors."""

import pytest

from lngraph.train.folds import FoldSplit, holdout_split, patient_folds

PATIENTS = [f"P{i:02d}" for i in range(23)]


def test_test_folds_partition_the_patients():
    folds = patient_folds(PATIENTS, folds=5, seed=3)
    assert len(folds) == 5
    tests = [p for f in folds for p in f.test]
    assert sorted(tests) == PATIENTS
    assert sorted(len(f.test) for f in folds) == [4, 4, 5, 5, 5]
    for f in folds:
        assert isinstance(f, FoldSplit)
        assert not set(f.train) & set(f.val)
        assert not set(f.train) & set(f.test)
        assert not set(f.val) & set(f.test)
        assert sorted(f.train + f.val + f.test) == PATIENTS
        assert list(f.train) == sorted(f.train) and list(f.test) == sorted(f.test)


def test_validation_is_carved_from_training_patients():
    for f in patient_folds(PATIENTS, folds=5, seed=0, val_fraction=0.2):
        rest = len(PATIENTS) - len(f.test)
        assert len(f.val) == round(0.2 * rest)
    no_val = patient_folds(PATIENTS, folds=5, val_fraction=0.0)
    assert all(f.val == () for f in no_val)


def test_deterministic_and_independent_of_input_order():
    a = patient_folds(PATIENTS, folds=4, seed=7)
    b = patient_folds(list(reversed(PATIENTS)) + PATIENTS[:3], folds=4, seed=7)
    assert a == b
    assert patient_folds(PATIENTS, folds=4, seed=8) != a


def test_holdout_split_sizes():
    train, val = holdout_split(["a", "b"], 0.2)
    assert len(val) == 1 and len(train) == 1
    train, val = holdout_split(["a"], 0.5)
    assert train == ("a",) and val == ()
    train, val = holdout_split([f"p{i}" for i in range(10)], 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val)


@pytest.mark.parametrize("kwargs, message", [
    ({"folds": 1}, "folds must be at least 2"),
    ({"folds": 30}, "30 folds need at least 30 patients, got 23"),
    ({"val_fraction": 1.0}, "val_fraction must be in"),
])
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        patient_folds(PATIENTS, **kwargs)


def test_no_patients():
    with pytest.raises(ValueError, match="no patients"):
        patient_folds([], folds=2)
