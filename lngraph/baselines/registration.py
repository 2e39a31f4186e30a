"""The ``registration`` baseline: SimpleITK image registration, mapped centres, gated Hungarian.

The classical clinical route. The later scan (moving) is registered to the earlier scan
(fixed): an affine transform by Mattes mutual information over a multi-resolution pyramid,
then a coarse B-spline on top of it. The resulting transform maps *fixed-space* points to
*moving-space* points (it is the one a resampler uses to pull the moving image onto the fixed
grid), so an earlier-scan node centre :math:`p` lies at :math:`T(p)` in the later scan. The
mapped centres are then assigned to the later centres by a distance-gated Hungarian
(:func:`~lngraph.baselines.pointset.match_mapped_points`).

Kept CPU-friendly: images bin-averaged to a ~3 mm working resolution, a fixed number of random
metric samples, shrunken pyramids, few iterations, a coarse control grid. The time spent per
pair is recorded (:attr:`ImageRegistration.last_seconds`).

This module owns :func:`register_images` and the :class:`ImageRegistration` method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lngraph.baselines.base import Method, register
from lngraph.baselines.pointset import match_mapped_points
from lngraph.io.cohort import Scan, ScanPair
from lngraph.io.image import read_image
from lngraph.io.matches import PairPrediction

#: Intensities are clamped to this window (HU) and shifted to be non-negative before
#: registration, so that image moments locate the body rather than the air around it.
HU_WINDOW = (-1000.0, 1000.0)


@dataclass(frozen=True)
class RegistrationParams:
    """Settings of :func:`register_images`.

    Args:
        working_spacing_mm: both images are first bin-averaged by integer factors towards this
            voxel size (the registration does not need the full resolution).
        bins: histogram bins of Mattes mutual information.
        samples: number of fixed-image voxels sampled at random for the metric at each
            pyramid level (all of them where the level has fewer); a count rather than a
            share keeps the cost independent of the scan size.
        shrink: pyramid shrink factors of the affine stage (coarse to fine).
        smooth_mm: Gaussian smoothing (mm) at each affine pyramid level.
        affine_step_mm: initial step (mm of the largest point shift) of the affine stage's
            regular-step gradient descent; halved at each change of direction.
        affine_iterations: gradient-descent iterations per affine level.
        bspline_mesh: control-grid cells per axis of the B-spline (0 skips the B-spline).
        bspline_shrink: pyramid shrink factors of the B-spline stage.
        bspline_iterations: L-BFGS-B iterations per B-spline level (at most three metric
            evaluations each).
        initializer: ``"moments"`` (centres of intensity mass) or ``"geometry"`` (image
            centres) for the initial translation.
        seed: seed of the metric's random sampling, a positive integer (SimpleITK reads 0 as
            "seed from the wall clock", which would make runs unrepeatable, so 0 is refused).
        threads: SimpleITK threads (``None``: SimpleITK's default).
    """

    working_spacing_mm: float = 3.0
    bins: int = 32
    samples: int = 10000
    shrink: tuple[int, ...] = (4, 2, 1)
    smooth_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    affine_step_mm: float = 2.0
    affine_iterations: int = 100
    bspline_mesh: int = 4
    bspline_shrink: tuple[int, ...] = (2, 1)
    bspline_iterations: int = 10
    initializer: str = "moments"
    seed: int = 1
    threads: int | None = None

    def __post_init__(self):
        if len(self.shrink) != len(self.smooth_mm):
            raise ValueError("shrink and smooth_mm need one entry per pyramid level")
        if self.initializer not in ("moments", "geometry"):
            raise ValueError(f"initializer must be 'moments' or 'geometry', got "
                             f"{self.initializer!r}")
        if self.seed < 1:
            raise ValueError(f"seed must be a positive integer (SimpleITK reads 0 as the wall "
                             f"clock), got {self.seed}")
        if self.samples <= 0:
            raise ValueError(f"samples must be positive, got {self.samples}")


def _prepare(image: sitk.Image, working_spacing_mm: float) -> sitk.Image:
    """Float32 copy clamped to :data:`HU_WINDOW`, shifted to start at 0 and bin-averaged
    (integer factor per axis) towards ``working_spacing_mm``; the world geometry is kept."""
    low, high = HU_WINDOW
    image = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, low, high) - low
    factors = [max(1, round(working_spacing_mm / s)) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _sampling(fixed: sitk.Image, shrink: tuple[int, ...], params: RegistrationParams
              ) -> list[float]:
    """Share of voxels to sample at each pyramid level for ``params.samples`` samples."""
    voxels = float(np.prod(fixed.GetSize()))
    return [min(1.0, params.samples * f ** 3 / voxels) for f in shrink]


def _method(fixed: sitk.Image, shrink: tuple[int, ...], smooth_mm: tuple[float, ...],
            params: RegistrationParams) -> sitk.ImageRegistrationMethod:
    """A Mattes-MI registration method with random sampling over the given pyramid."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(_sampling(fixed, shrink, params), params.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(smooth_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if params.threads is not None:
        method.SetNumberOfThreads(params.threads)
    return method


def _affine(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams
            ) -> sitk.AffineTransform:
    mode = (sitk.CenteredTransformInitializerFilter.MOMENTS if params.initializer == "moments"
            else sitk.CenteredTransformInitializerFilter.GEOMETRY)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3), mode)
    method = _method(fixed, params.shrink, params.smooth_mm, params)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=params.affine_step_mm,
                                                    minStep=1e-3,
                                                    numberOfIterations=params.affine_iterations,
                                                    relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(initial, inPlace=True)
    method.Execute(fixed, moving)
    return initial


def _bspline(fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform,
             params: RegistrationParams) -> sitk.BSplineTransform:
    grid = sitk.BSplineTransformInitializer(fixed, [params.bspline_mesh] * 3)
    method = _method(fixed, params.bspline_shrink,
                     tuple(float(f) for f in params.bspline_shrink), params)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5,
                                numberOfIterations=params.bspline_iterations,
                                maximumNumberOfCorrections=5,
                                maximumNumberOfFunctionEvaluations=3 * params.bspline_iterations)
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(grid, inPlace=True)
    method.Execute(fixed, moving)
    return grid


def register_images(fixed: sitk.Image, moving: sitk.Image,
                    params: RegistrationParams | None = None) -> sitk.Transform:
    """Register ``moving`` to ``fixed``: affine (Mattes MI, multi-resolution), then B-spline.

    Returns:
        the transform taking a point of ``fixed`` (world LPS mm) to the corresponding point of
        ``moving``: ``affine(bspline(p))``.
    """
    params = params or RegistrationParams()
    fixed = _prepare(fixed, params.working_spacing_mm)
    moving = _prepare(moving, params.working_spacing_mm)
    affine = _affine(fixed, moving, params)
    if params.bspline_mesh <= 0:
        return affine
    bspline = _bspline(fixed, moving, affine, params)
    # A composite applies its transforms last-added first: p -> affine(bspline(p)), the order
    # the registration optimised (its moving initial transform acts after the optimised one).
    return sitk.CompositeTransform([affine, bspline])


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Apply a SimpleITK transform to ``[N, 3]`` world points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.array([transform.TransformPoint(tuple(map(float, p))) for p in points],
                    dtype=np.float64).reshape(-1, 3)


def _image_of(scan: Scan) -> sitk.Image:
    if scan.image is None:
        raise ValueError(f"scan {scan.scan_id!r} of patient {scan.patient_id!r} has no image; "
                         "the 'registration' method needs images")
    return read_image(scan.image)


@register
class ImageRegistration(Method):
    """Image registration of the later scan onto the earlier one, then gated Hungarian.

    Args:
        gate_mm: largest distance (mm) between a mapped earlier centre and a later centre at
            which the two may match.
        params: registration settings (:class:`RegistrationParams`).

    Attributes:
        last_seconds: wall-clock seconds of the last :meth:`predict` (reading, registration and
            matching).
    """

    name = "registration"
    needs_images = True
    seeded = False  # the metric sampling seed is RegistrationParams.seed

    def __init__(self, gate_mm: float = 15.0, params: RegistrationParams | None = None):
        if gate_mm <= 0:
            raise ValueError(f"gate_mm must be positive, got {gate_mm}")
        self.gate_mm = gate_mm
        self.params = params or RegistrationParams()
        self.last_seconds = float("nan")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gate_mm={self.gate_mm}, params={self.params})"

    def predict(self, pair: ScanPair) -> PairPrediction:
        start = time.perf_counter()
        n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
        if n_src == 0 or n_dst == 0:
            self.last_seconds = time.perf_counter() - start
            return PairPrediction(n_src, n_dst, points=np.full((n_src, 3), np.nan))
        transform = register_images(_image_of(pair.src), _image_of(pair.dst), self.params)
        mapped = transform_points(transform, pair.src.nodes.pos)
        matches, scores = match_mapped_points(mapped, pair.dst.nodes.pos, self.gate_mm)
        self.last_seconds = time.perf_counter() - start
        return PairPrediction(n_src, n_dst, matches, scores, points=mapped)
