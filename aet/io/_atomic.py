"""Atomic writes: write to a temporary name in the target folder, then rename into place.

A crash or an exception inside the writer leaves any previous file at the target intact and no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@contextlib.contextmanager
def atomic_path(target, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    Works for files and for directory stores (Zarr). For a directory that already exists the
    old one is moved aside, the new one renamed in, and only then the old one deleted.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: folder {str(parent)!r} does not exist; create it "
            f"first (e.g. os.makedirs)"
        )
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it")
    tag = uuid.uuid4().hex[:8]
    # keep the suffix so writers that look at the extension see the right one
    tmp = parent / f".{target.stem}.aet-tmp-{tag}{target.suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"the writer produced nothing at {tmp}")
        if tmp.is_dir() and target.exists():
            old = parent / f".{target.name}.aet-old-{tag}"
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            _remove(old)
        else:
            if target.is_dir():
                _remove(target)
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
