import pytest

from lngraph.baselines.base import REGISTRY, Method, register
from lngraph.bench.registry import (
    BUILTIN_METHODS,
    available_methods,
    build_method,
    import_methods,
    method_names,
)


def test_every_built_in_method_is_listed_once():
    names = [cls.name for cls in BUILTIN_METHODS]
    assert len(set(names)) == len(names) and all(names)
    for cls in BUILTIN_METHODS:
        assert REGISTRY[cls.name] is cls
    unlisted = [name for name, cls in REGISTRY.items()
                if cls.__module__.startswith("lngraph.") and cls not in BUILTIN_METHODS]
    assert not unlisted, f"built-in methods missing from BUILTIN_METHODS: {unlisted}"


def test_user_methods_follow_the_built_ins_by_name(registry):
    for name in ("zz_for_test", "aa_for_test"):
        register(type(name, (Method,), {"name": name}))
    assert list(available_methods())[-2:] == ["aa_for_test", "zz_for_test"]
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Method,), {"name": "nearest"}))


def test_build_method_passes_seed_and_caps_epochs_as_declared(registry):
    @register
    class Learner(Method):
        name = "learner_for_test"
        learned = True
        seeded = True
        epochs_option = "epochs"

        def __init__(self, epochs: int = 50, seed: int = 0, width: int = 4):
            self.epochs, self.seed, self.width = epochs, seed, width

    method = build_method("learner_for_test", seed=3, max_epochs=10, options={"width": 8})
    assert (method.epochs, method.seed, method.width) == (10, 3, 8)
    method = build_method("learner_for_test", seed=3, max_epochs=10, options={"epochs": 5})
    assert method.epochs == 5
    assert build_method("learner_for_test").epochs == 50
    assert build_method("learner_for_test", seed=3, options={"seed": 7}).seed == 7
    assert build_method("nearest", seed=3, max_epochs=2).gate_mm > 0
    with pytest.raises(ValueError, match="unknown method"):
        build_method("nope")


def test_undeclared_seed_and_epochs_are_not_passed(registry):
    @register
    class Plain(Method):
        name = "plain_for_test"

        def __init__(self, epochs: int = 50, seed: int = 0):
            self.epochs, self.seed = epochs, seed

    method = build_method("plain_for_test", seed=3, max_epochs=10)
    assert (method.epochs, method.seed) == (50, 0)


def test_built_in_methods_declare_their_contract():
    from lngraph.baselines import LGM, DLTLite, GeometryFusion, Nearest
    from lngraph.train import MatcherMethod
    from lngraph.train.ablations import WithSE

    assert (LGM.seeded, LGM.epochs_option) == (True, "epochs")
    assert (DLTLite.seeded, DLTLite.epochs_option) == (True, None)
    assert (Nearest.seeded, Nearest.epochs_option) == (False, None)
    assert (GeometryFusion.seeded, GeometryFusion.epochs_option) == (True, None)
    assert not GeometryFusion.needs_images and GeometryFusion.learned
    assert build_method("geometry_fusion", seed=4, max_epochs=3).seed == 4
    lgm = build_method("lgm", seed=4, max_epochs=3)
    assert (lgm.seed, lgm.epochs) == (4, 3)
    assert build_method("sam_lite", seed=5, max_epochs=3).params.seed == 5
    for cls in (MatcherMethod, WithSE):
        method = cls.build(seed=6, max_epochs=2)
        assert (method.seed, method.max_epochs) == (6, 2)
    assert MatcherMethod.build({"max_epochs": 5, "seed": 1}, max_epochs=2).max_epochs == 2
    method = MatcherMethod.build({"max_epochs": 1, "seed": 1}, seed=6, max_epochs=2)
    assert (method.seed, method.max_epochs) == (1, 1)


def test_method_names_resolve_all_in_order_and_reject_unknown():
    names = method_names("all")
    assert names[:len(BUILTIN_METHODS)] == [cls.name for cls in BUILTIN_METHODS]
    assert names[:3] == ["nearest", "pointset", "registration"]
    assert names.index("geometry_fusion") == names.index("lgm") + 1
    builtin = names[:len(BUILTIN_METHODS)]
    # the Table 1 rows, then the paper's model, then the graph matcher and its ablations
    assert builtin[-16:] == ["abl_appearance", "abl_seag", "abl_te", "abl_se", "abl_scb",
                             "paper", "matcher", "matcher_geometry", "matcher_geometry_frame",
                             "matcher_geometry_frame_ensemble", "matcher_dustbin",
                             "matcher_geometry_dustbin",
                             "matcher_no_cross", "matcher_no_position", "matcher_no_self",
                             "matcher_seag"]
    assert names.index("geometry_fusion_frame") == names.index("geometry_fusion") + 1
    assert {"lgm", "matcher", "abl_appearance", "abl_se", "matcher_geometry"} <= set(
        names)
    assert not {"asymmetric", "asymmetric_geometry"} & set(names)    # the old names are gone
    assert method_names(["pointset", "nearest", "pointset"]) == ["pointset", "nearest"]
    with pytest.raises(ValueError, match="unknown method.*nope.*registered: nearest"):
        method_names(["nope"])


def test_a_missing_method_file_or_module_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        import_methods([str(tmp_path / "missing.py")])
    with pytest.raises(ValueError, match="cannot import method module"):
        import_methods(["no_such_module_for_lngraph"])
