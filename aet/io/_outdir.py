"""Output folders that keep the user's files: results are assembled under a temporary name,
then moved in entry by entry; aet replaces only what it wrote before.

A folder written by :func:`output_folder` holds a manifest, ``.aet-written.json``, listing
the entries (files and folders at its top level) aet put there. Writing into an existing
folder:

- an empty folder is used as is;
- a folder with content is refused unless ``overwrite=True``;
- with ``overwrite=True``, entries the manifest lists are replaced (or removed when the new
  run does not write them); every other entry — the user's own files — is left untouched, and
  a new result whose name is taken by such a file is refused rather than written over it.

Each entry is renamed into place (``os.replace``), so a reader never sees a half-written file,
and an error before the end leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import AetError

MANIFEST = ".aet-written.json"

__all__ = ["MANIFEST", "OutputExistsError", "check_output_folder", "output_folder"]


class OutputExistsError(AetError, FileExistsError):
    """The output exists and overwriting it was not asked for (or would touch user files)."""


def _written_before(out: Path) -> set[str]:
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    entries = doc.get("entries") if isinstance(doc, dict) else None
    return {str(e) for e in entries if isinstance(e, str) and "/" not in e and e not in
            ("", ".", "..")} if isinstance(entries, list) else set()


def _user_entries(out: Path) -> list[str]:
    mine = _written_before(out) | {MANIFEST}
    return sorted(p.name for p in out.iterdir() if p.name not in mine)


def check_output_folder(out, *, overwrite: bool, names: Iterable[str] = (),
                        flag: str = "overwrite=True") -> None:
    """Raise :class:`OutputExistsError` now (before any work) if writing ``names`` into
    ``out`` would be refused; ``flag`` is how the caller says "overwrite" in messages."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{str(out)!r} exists and is not a folder; choose another "
                                f"output folder")
    content = sorted(p.name for p in out.iterdir())
    if not content:
        return
    if not overwrite:
        shown = ", ".join(content[:5]) + (", ..." if len(content) > 5 else "")
        raise OutputExistsError(
            f"output folder {str(out)!r} exists and is not empty ({shown}); pass {flag} to "
            f"replace what aet wrote there (other files are kept), or choose another folder")
    taken = sorted(set(names) & set(_user_entries(out)))
    if taken:
        raise OutputExistsError(
            f"output folder {str(out)!r} holds {', '.join(taken)}, which aet did not write; "
            f"move them away or choose another folder (aet never replaces files it did not "
            f"write)")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@contextlib.contextmanager
def output_folder(out, *, overwrite: bool = False, flag: str = "overwrite=True"
                  ) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success move its entries into
    ``out`` (see the module docstring for what may be replaced)."""
    out = Path(out)
    check_output_folder(out, overwrite=overwrite, flag=flag)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = parent / f".{out.name}.aet-tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        names = sorted(p.name for p in tmp.iterdir() if p.name != MANIFEST)
        from .._version import __version__

        (tmp / MANIFEST).write_text(json.dumps(
            {"written_by": f"aet {__version__}", "entries": names}, indent=1) + "\n",
            encoding="utf-8")
        if not out.exists():
            os.replace(tmp, out)
            return
        check_output_folder(out, overwrite=overwrite, names=names, flag=flag)
        before = _written_before(out)
        trash = parent / f".{out.name}.aet-old-{tag}"
        trash.mkdir()
        try:
            for name in sorted(before - set(names)):
                if (out / name).exists() or (out / name).is_symlink():
                    os.replace(out / name, trash / name)
            for name in [*names, MANIFEST]:
                if (out / name).exists() or (out / name).is_symlink():
                    os.replace(out / name, trash / f"{name}.old")
                os.replace(tmp / name, out / name)
        finally:
            _remove(trash)
    finally:
        if tmp.exists():
            _remove(tmp)
