"""Nine 2D views of a cube (docs/design.md, *Crops and views*): 3 orthogonal central planes + 6
diagonal planes.

For a cube ``c`` of side ``S`` in numpy order ``(z, y, x)`` (as :func:`~lngraph.data.crop_cubes`
returns it) and ``t = 0 … S-1``, view ``v`` is the ``S × S`` image ``v[r, t]``:

| v | plane | `v[r, t]` |
|---|---|---|
| 0 | axial (central z) | `c[m, r, t]` |
| 1 | coronal (central y) | `c[r, m, t]` |
| 2 | sagittal (central x) | `c[r, t, m]` |
| 3 | y–x main diagonal | `c[r, t, t]` |
| 4 | y–x anti-diagonal | `c[r, t, S-1-t]` |
| 5 | z–x main diagonal | `c[t, r, t]` |
| 6 | z–x anti-diagonal | `c[t, r, S-1-t]` |
| 7 | z–y main diagonal | `c[t, t, r]` |
| 8 | z–y anti-diagonal | `c[t, S-1-t, r]` |

In an orthogonal view ``(r, t)`` are the two remaining axes in numpy order; in a diagonal view
``r`` runs along the axis the plane contains whole and ``t`` along the diagonal. ``m`` is the
centre ``(S-1)/2``: for an even ``S`` it lies between two slices and the central plane is their
mean (linear interpolation at the exact centre, where the node centre is); for an odd ``S`` it
is the middle slice. Every diagonal plane passes through the cube's centre exactly. The six
diagonal planes cut the cube along different voxel sets, so all nine views differ for a
generic cube.

Works on numpy arrays and torch tensors alike (any device); knows no model.
"""

from __future__ import annotations

import numpy as np
import torch

N_VIEWS = 9


def view_indices(size: int) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """For each view, the one or two ``(z, y, x)`` index triples (each ``[S, S]``) it averages."""
    r, t = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    flip = size - 1 - t
    centres = sorted({(size - 1) // 2, size // 2})

    def full(value: int) -> np.ndarray:
        return np.full((size, size), value)

    return [
        [(full(m), r, t) for m in centres],
        [(r, full(m), t) for m in centres],
        [(r, t, full(m)) for m in centres],
        [(r, t, t)],
        [(r, t, flip)],
        [(t, r, t)],
        [(t, r, flip)],
        [(t, t, r)],
        [(t, flip, r)],
    ]


def nine_views(cubes):
    """The nine views of every cube.

    Args:
        cubes: ``[N, S, S, S]`` or ``[N, 1, S, S, S]`` numpy array or torch tensor, numpy order
            ``(z, y, x)``.

    Returns:
        ``[N, 9, S, S]`` of the same kind (numpy or torch, same device); floating inputs keep
        their dtype.
    """
    is_torch = isinstance(cubes, torch.Tensor)
    if not is_torch:
        cubes = np.asarray(cubes)
    if cubes.ndim == 5 and cubes.shape[1] == 1:
        cubes = cubes[:, 0]
    if cubes.ndim != 4 or not cubes.shape[1] == cubes.shape[2] == cubes.shape[3]:
        raise ValueError(f"expected cubes [N, S, S, S] or [N, 1, S, S, S], got "
                         f"{tuple(cubes.shape)}")
    views = []
    for triples in view_indices(cubes.shape[1]):
        planes = []
        for z, y, x in triples:
            if is_torch:
                z, y, x = (torch.as_tensor(a, device=cubes.device) for a in (z, y, x))
            planes.append(cubes[:, z, y, x])
        views.append(planes[0] if len(planes) == 1 else (planes[0] + planes[1]) / 2)
    return torch.stack(views, dim=1) if is_torch else np.stack(views, axis=1)
