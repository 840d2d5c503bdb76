"""Export of a tracked series to extended XYZ (one frame per time) for OVITO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_extxyz_series"]


def write_extxyz_series(path, positions: Sequence[np.ndarray], species: Sequence[np.ndarray], *,
                        arrays: Sequence[Mapping[str, np.ndarray]] | None = None,
                        times_min: Sequence[float] | None = None,
                        overwrite: bool = True) -> Path:
    """Write a multi-frame extended-XYZ file (OVITO reads the frames as an animation).

    Parameters
    ----------
    path : str or path-like
        Target ``.xyz``/``.extxyz`` file, written atomically (temporary name, then rename).
    positions, species : sequences (one per time) of (n_t, 3) Å and (n_t,) symbols
    arrays : sequence of mappings, optional
        Per time, further per-atom columns (e.g. ``order``, ``nucleus``, ``track``,
        ``atom_identity``); numeric arrays of length ``n_t``.
    times_min : sequence of float, optional
        Written as ``time_min`` in each frame's header.

    Returns
    -------
    pathlib.Path
    """
    import ase
    import ase.io

    from ..io._atomic import atomic_path

    nt = len(positions)
    if len(species) != nt or (arrays is not None and len(arrays) != nt):
        raise ValueError("positions, species and arrays need one entry per time")
    frames = []
    for k in range(nt):
        pos = np.asarray(positions[k], dtype=np.float64).reshape(-1, 3)
        at = ase.Atoms(symbols=[str(s) for s in np.asarray(species[k]).tolist()], positions=pos)
        for name, v in (arrays[k] if arrays is not None else {}).items():
            v = np.asarray(v)
            if v.shape[0] != pos.shape[0]:
                raise ValueError(f"arrays[{k}][{name!r}] has {v.shape[0]} values for "
                                 f"{pos.shape[0]} atoms")
            at.new_array(str(name), v.astype(np.float64 if v.dtype.kind == "f" else np.int64))
        if times_min is not None:
            at.info["time_min"] = float(times_min[k])
        at.info["frame"] = k
        frames.append(at)
    p = Path(path)
    with atomic_path(p, overwrite=overwrite) as tmp:
        ase.io.write(str(tmp), frames, format="extxyz")
    return p
