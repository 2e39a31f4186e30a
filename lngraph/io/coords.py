"""Coordinate frames.

Three ways to name a point of an image, and the maps between them:

* **world** — millimetres in the ITK/DICOM **LPS** frame, ordered ``(x, y, z)``. Every
  coordinate lngraph stores is in this frame.
* **index** — continuous voxel index ``(i, j, k)``, where ``i`` runs fastest in memory.
* **array** — numpy order ``(k, j, i)``, as returned by ``SimpleITK.GetArrayFromImage``.

World and index are related by the image geometry (origin ``o``, spacing ``s``, direction
cosines ``D`` whose columns are the world directions of the i, j, k axes):

.. math::
    p = o + D \\operatorname{diag}(s)\\, u, \\qquad u = \\operatorname{diag}(s)^{-1} D^{-1} (p - o).

NIfTI stores RAS; LPS is RAS with x and y negated (:func:`ras_to_lps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_RAS_LPS = np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points) -> np.ndarray:
    """Map RAS points ``[..., 3]`` to LPS (negate x and y). The map is its own inverse."""
    return np.asarray(points, dtype=np.float64) * _RAS_LPS


lps_to_ras = ras_to_lps


def index_to_array_order(index) -> np.ndarray:
    """``(i, j, k)`` → ``(k, j, i)`` along the last axis."""
    return np.asarray(index)[..., ::-1].copy()


array_order_to_index = index_to_array_order


@dataclass(frozen=True)
class ImageGeometry:
    """Origin, spacing, direction and size of a 3D image (everything needed to place voxels).

    Args:
        origin: world position of voxel ``(0, 0, 0)`` in LPS mm, ``(x, y, z)``.
        spacing: voxel size in mm along i, j, k.
        direction: 3×3 matrix whose columns are the unit world directions of i, j, k.
        size: number of voxels along i, j, k.
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    size: tuple[int, int, int]

    def __post_init__(self):
        d = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if np.any(np.asarray(self.spacing) <= 0):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-3):
            raise ValueError(f"direction must be orthonormal, got {self.direction}")

    @classmethod
    def from_image(cls, image) -> ImageGeometry:
        """Read the geometry of a ``SimpleITK.Image``."""
        return cls(
            origin=tuple(float(v) for v in image.GetOrigin()),
            spacing=tuple(float(v) for v in image.GetSpacing()),
            direction=tuple(float(v) for v in image.GetDirection()),
            size=tuple(int(v) for v in image.GetSize()),
        )

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def index_to_world_matrix(self) -> np.ndarray:
        """``D diag(s)``: maps an index offset to a world offset."""
        return self.direction_matrix * np.asarray(self.spacing)[None, :]

    def world_to_index(self, points) -> np.ndarray:
        """World LPS ``[..., 3]`` → continuous index ``(i, j, k)``."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.origin)
        return np.linalg.solve(self.index_to_world_matrix, p.reshape(-1, 3).T).T.reshape(p.shape)

    def index_to_world(self, index) -> np.ndarray:
        """Continuous index ``(i, j, k)`` ``[..., 3]`` → world LPS."""
        u = np.asarray(index, dtype=np.float64)
        return u @ self.index_to_world_matrix.T + np.asarray(self.origin)

    def world_to_array(self, points) -> np.ndarray:
        """World LPS → continuous numpy order ``(k, j, i)``."""
        return index_to_array_order(self.world_to_index(points))

    def array_to_world(self, array_index) -> np.ndarray:
        """Numpy order ``(k, j, i)`` → world LPS."""
        return self.index_to_world(array_order_to_index(array_index))

    def contains(self, points, margin: float = 0.5) -> np.ndarray:
        """Boolean mask: which world points fall inside the image (voxel centres ± ``margin``)."""
        u = self.world_to_index(points)
        size = np.asarray(self.size)
        return np.all((u >= -margin) & (u <= size - 1 + margin), axis=-1)

    @property
    def extent_mm(self) -> np.ndarray:
        """Physical size along i, j, k in mm."""
        return np.asarray(self.size) * np.asarray(self.spacing)
