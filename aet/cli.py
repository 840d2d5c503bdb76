"""The ``aet`` command line: ``aet demo`` and one subcommand per stage on files.

Subcommands (``aet COMMAND --help`` for each)::

    run          the whole pipeline on your own tilt series (aet.run): atoms, report
    demo         simulate an FePt nanoparticle and run the whole pipeline
    info         describe a file: kind, shape, metadata, value range, provenance
    preprocess   register frames, remove the background, align, denoise a tilt series
    reconstruct  reconstruct a volume from a tilt series
    trace        trace atoms in a volume
    classify     assign species to traced atoms
    cleanup      drop isolated peaks (as ``aet demo`` does between classify and refine)
    refine       refine a model (and the alignment) against the projections
    analyze      chemical order and strain of a model -> NetCDF files
    track        find and track nuclei across annealing times (4D AET)
    export       atom formats or DFT input sets

The demo's chain on files, with the demo's settings::

    aet preprocess raw.mrc aligned.zarr --steps register,background,align
    aet preprocess aligned.zarr denoised.zarr --steps denoise
    aet reconstruct denoised.zarr volume.zarr --method resire --iterations 100
    aet trace volume.zarr traced.csv
    aet classify traced.csv volume.zarr classified.csv --species Fe Pt
    aet cleanup classified.csv cleaned.csv --volume volume.zarr
    aet refine cleaned.csv aligned.zarr refined.csv --refine-alignment shifts,angles --add-remove

Behaviour common to all subcommands:

- Outputs are checked before any work: an unsupported extension, or an output that exists
  (without ``--overwrite``), stops the command at once. Files are written atomically (temporary
  name, then rename); output *folders* replace only what aet wrote there before.
- Angles (``--angles``): a file (IMOD ``.tlt``/``.rawtlt``, SerialEM ``.mdoc``, text, ``.mat``)
  or a comma-separated list of degrees; by default from the file or a sidecar next to it.
- Errors: problems with the input — the classes of :mod:`aet.errors`, a ``ValueError`` raised
  by aet's own checks, and file-system errors (missing file, no permission) — print one line,
  ``aet COMMAND: error: ...``, and exit with status 1. Anything else is a bug in aet and shows
  its traceback (please report it); ``--traceback`` shows it for input errors too.
- Output cut short by the reader (``aet info big.mrc | head``) ends quietly with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from pathlib import Path

from .errors import AetError, AngleUnitWarning

EXIT_ERROR = 1
EXIT_USAGE = 2

#: File-system errors that are about the user's paths, never a bug.
_FILE_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError)


# --------------------------------------------------------------------------- arguments
def _positive(flag: str, *, integer: bool = False):
    def conv(text: str):
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, got {text!r}") from None
        if not (v > 0 and v == v and v != float("inf")):
            raise argparse.ArgumentTypeError(f"{flag} must be > 0, got {text}")
        return v

    return conv


def _nonneg_int(flag: str):
    def conv(text: str):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") \
                from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be ≥ 0, got {v}")
        return v

    return conv


def _csv_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _species(values: list[str]) -> list[str]:
    out = [s for v in values for s in _csv_list(v)]
    if len(out) < 1:
        raise ValueError("--species: give the species light to heavy, e.g. --species Fe Pt")
    return out


def _metadata(args, *, tilt_series: bool = True) -> dict:
    """Reader keywords from the shared input flags."""
    md = {}
    if getattr(args, "angles", None) is not None and tilt_series:
        md["angles"] = args.angles  # a path or a comma list: aet.io.angles.read_angles
    if getattr(args, "pixel_size", None) is not None:
        md["pixel_size_A"] = args.pixel_size
    if getattr(args, "voxel_size", None) is not None:
        md["voxel_size_A"] = args.voxel_size
    if getattr(args, "frames_per_angle", None) is not None:
        md["frames_per_angle"] = args.frames_per_angle
    if getattr(args, "euler_convention", None) is not None:
        md["euler_convention"] = args.euler_convention
    return md


def _open(path, kind=None, **md):
    from . import io

    return io.open(path, kind=kind, **md)


def _expect(obj, cls_name: str, path, flag_hint: str = ""):
    if type(obj).__name__ != cls_name:
        raise ValueError(f"{path} holds a {type(obj).__name__}; this command needs a "
                         f"{cls_name}{flag_hint}")
    return obj


def _check_output(out, kind: str, overwrite: bool) -> Path:
    """Refuse an unsupported extension or an existing output now, before any work."""
    from .errors import UnknownFormatError
    from .io import REGISTRY
    from .io._registry import format_for

    out = Path(out)
    try:
        fmt = format_for(out, kind=kind)
    except UnknownFormatError:
        ok = sorted({e for f in REGISTRY.values() if kind in f.kinds and f.writer
                     for e in (*f.extensions, *f.filenames)})
        what = {"tilt_series": "a tilt series", "volume": "a volume",
                "model": "an atomic model"}[kind]
        raise UnknownFormatError(
            f"cannot write {what} to {str(out)!r}: unsupported extension "
            f"{out.suffix or '(none)'!r}; use one of {', '.join(ok)}") from None
    if fmt.writer is None:
        raise UnknownFormatError(f"format {fmt.name!r} ({out.suffix}) can be read but not "
                                 f"written; use .zarr, .mrc, .tif, .nc or .npz")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(f"{str(out)!r} exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(out)!r}: folder {str(parent)!r} does not "
                                f"exist; create it first (mkdir -p {parent})")
    return out


def _check_folder(out, overwrite: bool, names=()) -> Path:
    from .io._outdir import check_output_folder

    check_output_folder(out, overwrite=overwrite, names=names, flag="--overwrite")
    return Path(out)


def _write(obj, out, overwrite: bool) -> None:
    from . import io

    out = Path(out)
    io.write(obj, out, overwrite=overwrite)
    print(f"wrote {out}")


# --------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    from .workflow import RUN_ENTRIES, run

    species = _species(args.species)
    names = RUN_ENTRIES + (() if args.no_report else ("report.html", "figures",
                                                        "summary.txt"))
    out = _check_folder(args.out, args.overwrite, names)  # before any work
    ts = _expect(_open(args.file, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.file, " (projections: angle, y, x)")
    kw = {}
    if args.method is not None:
        kw["method"] = args.method
    if args.iterations is not None:
        kw["n_iter"] = args.iterations
    if args.tilt_axis is not None:
        kw["tilt_axis"] = None if args.tilt_axis == "none" else (
            "estimate" if args.tilt_axis == "estimate" else _tilt_axis(args.tilt_axis))
    result = run(ts, species, denoise=False if args.no_denoise else "auto",
                 refine=not args.no_refine,
                 min_distance_A=args.min_distance, progress=not args.no_progress, **kw)
    result.save(out, overwrite=args.overwrite, report=not args.no_report)
    print(result.summary())
    print(f"\nresults written to {out}/" + ("" if args.no_report else " (open report.html)"))
    return 0


def _tilt_axis(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--tilt-axis must be 'estimate', 'none' or an angle in degrees, got "
                         f"{text!r}") from None


def cmd_demo(args) -> int:
    from .pipeline import DEMO_ENTRIES, run_demo

    _check_folder(args.out, args.overwrite, DEMO_ENTRIES)
    result = run_demo(size=args.size, out=args.out, seed=args.seed, method=args.method,
                      progress=not args.no_progress, overwrite=args.overwrite)
    print(result.table())
    print(f"\nresults written to {result.out}/ (open report.html)")
    return 0


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _path_size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def cmd_info(args) -> int:
    import numpy as np

    from .io._registry import format_for

    path = Path(args.file)
    obj = _open(path, kind=args.kind, **_metadata(args))
    try:
        fmt = format_for(path).description
    except AetError:
        fmt = "?"
    print(f"{path}: {fmt}, {_human_bytes(_path_size(path))}")
    print(repr(obj))
    name = type(obj).__name__
    if name in ("TiltSeries", "Volume"):
        da = obj.data
        line = f"data: {da.dtype}, dims {dict(da.sizes)}"
        if obj.is_lazy and da.nbytes > 256 * 2**20:
            chunks = tuple(c[0] for c in da.data.chunks)
            print(f"{line}, dask chunks {chunks}: values not read ({_human_bytes(da.nbytes)}, "
                  f"lazy)")
        else:
            v = np.asarray(da.values)
            print(f"{line}, values min {v.min():.6g}, max {v.max():.6g}, mean {v.mean():.6g}")
        if name == "TiltSeries":
            src = next((r["params"].get("angles") for r in reversed(obj.provenance)
                        if r.get("op") == "open"), None)
            if src:
                print(f"angles from: {src}")
    prov = getattr(obj, "provenance", [])
    if prov:
        print("history: " + " → ".join(r.get("op", "?") for r in prov))
    return 0


_STEPS = {"register": "register_frames", "background": "remove_background", "align": "align",
          "denoise": "denoise"}


def cmd_preprocess(args) -> int:
    steps = _csv_list(args.steps)
    bad = [s for s in steps if s not in _STEPS]
    if bad or not steps:
        raise ValueError(f"--steps: unknown step(s) {bad}; choose from "
                         f"{', '.join(_STEPS)} (comma-separated, in order)")
    _check_output(args.output, "tilt_series", args.overwrite)
    ts = _expect(_open(args.input, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.input)
    for step in steps:
        if step == "register" and ts.n_frames == 1:
            print("register: one frame per angle, nothing to register")
            continue
        ts = getattr(ts, _STEPS[step])()
    if ts.n_frames > 1:
        print(f"note: the output still has {ts.n_frames} frames per angle; add 'register' to "
              f"--steps to merge them", file=sys.stderr)
    _write(ts, args.output, args.overwrite)
    return 0


def cmd_reconstruct(args) -> int:
    if args.method == "wbp" and args.iterations is not None:
        raise ValueError("--iterations does not apply to --method wbp (a direct method)")
    _check_output(args.output, "volume", args.overwrite)
    ts = _expect(_open(args.input, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.input)
    kw = {}
    if args.iterations is not None:
        kw["n_iter"] = args.iterations
    vol = ts.reconstruct(method=args.method, **kw)
    _write(vol, args.output, args.overwrite)
    return 0


def cmd_trace(args) -> int:
    _check_output(args.output, "model", args.overwrite)
    vol = _expect(_open(args.input, kind="volume", **_metadata(args, tilt_series=False)),
                  "Volume", args.input)
    model = vol.trace_atoms(min_distance_A=args.min_distance)
    print(f"traced {model.n_atoms} atoms")
    _write(model, args.output, args.overwrite)
    return 0


def cmd_classify(args) -> int:
    species = _species(args.species)
    _check_output(args.output, "model", args.overwrite)
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    vol = _expect(_open(args.volume, kind="volume"), "Volume", args.volume)
    model = model.classify(species, volume=vol)
    print("species counts:", model.species_counts())
    _write(model, args.output, args.overwrite)
    return 0


def cmd_cleanup(args) -> int:
    import numpy as np
    from scipy.spatial import cKDTree

    _check_output(args.output, "model", args.overwrite)
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    radius = args.radius
    if radius is None:
        pos = model.positions
        if len(pos) < 2:
            raise ValueError(f"{args.model} has {len(pos)} atom(s); --radius needs to be given "
                             f"for a model this small")
        d, _ = cKDTree(pos).query(pos, k=2)
        # aet demo's rule: 1.15 × the median nearest-neighbour distance (between the first
        # and second shells of a close-packed crystal)
        radius = args.radius_factor * float(np.median(d[:, 1]))
    box = None
    if args.volume is not None:
        box = _expect(_open(args.volume, kind="volume"), "Volume", args.volume).box_A
    out = model.cleanup(min_neighbours=args.min_neighbours, radius_A=radius,
                        min_distance_A=args.min_distance, box_A=box)
    n = model.n_atoms - out.n_atoms
    n_edge = sum(v == "edge" for v in out.provenance[-1]["result"]["reason"].values())
    print(f"removed {n} of {model.n_atoms} atoms (fewer than {args.min_neighbours} neighbours "
          f"within {radius:.3f} Å{'' if args.min_distance is None else ' or too close'}"
          f"{'' if box is None else f'; {n_edge} in peak groups at the volume faces'})")
    _write(out, args.output, args.overwrite)
    return 0


def cmd_refine(args) -> int:
    what = _csv_list(args.refine_alignment) if args.refine_alignment else None
    allowed = {"shifts", "angles", "phi", "theta", "psi"}
    if what is not None and (not what or set(what) - allowed):
        raise ValueError(f"--refine-alignment: unknown item(s) {sorted(set(what) - allowed)}; "
                         f"choose from shifts, angles, phi, theta, psi (comma-separated)")
    if args.tilts_output is not None and not what:
        raise ValueError("--tilts-output writes the series the fitted alignment updated; give "
                         "--refine-alignment too (e.g. --refine-alignment shifts,angles)")
    _check_output(args.output, "model", args.overwrite)
    if args.tilts_output is not None:
        _check_output(args.tilts_output, "tilt_series", args.overwrite)
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    ts = _expect(_open(args.tilts, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.tilts)
    kw = {"add_remove": args.add_remove}
    if what:
        kw["refine_alignment"] = tuple(what)
    out, ts_out = model.refine(ts, return_series=True, **kw)
    print(f"refined {out.n_atoms} atoms" + (f" ({out.n_atoms - model.n_atoms:+d} added/removed)"
                                           if args.add_remove else ""))
    _write(out, args.output, args.overwrite)
    if args.tilts_output is not None:
        _write(ts_out, args.tilts_output, args.overwrite)
    elif what:
        print("note: the fitted alignment updates the tilt series, not the model; write the "
              "updated series with --tilts-output for a later refine")
    return 0


def cmd_analyze(args) -> int:
    from .io._outdir import output_folder
    from .io.netcdf import write_dataset

    order_kind = None if args.order == "none" else args.order
    if order_kind is None and not args.strain:
        raise ValueError("nothing to do: pass --order L10|L12 and/or --strain")
    out = _check_folder(args.output, args.overwrite)
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    summary: dict = {"model": str(args.model), "n_atoms": model.n_atoms,
                     "species": model.species_counts()}
    with output_folder(out, overwrite=args.overwrite, flag="--overwrite") as tmp:
        if order_kind is not None:
            order = model.analysis.order_parameters(order_kind)
            write_dataset(order, tmp / f"order_{order_kind}.nc")
            var = f"order_{order_kind}"
            phase = order["phase"].values
            summary["order"] = {"kind": order_kind,
                                f"mean_{var}": float(order[var].mean()),
                                "ordered_fraction": float((phase != "A1").mean())}
        if args.strain:
            kw = {} if args.structure == "auto" else {"structure": args.structure}
            strain = model.analysis.strain(**kw)
            write_dataset(strain, tmp / "strain.nc")
            inside = strain["mask"].values
            summary["strain"] = {
                "reference": strain.attrs.get("reference"),
                "structure": strain.attrs.get("structure"),
                "reference_a_A": strain.attrs.get("reference_a_A"),
                "reference_c_A": strain.attrs.get("reference_c_A"),
                **{f"rms_{c}": float((strain[c].values[inside] ** 2).mean() ** 0.5)
                   for c in ("e_xx", "e_yy", "e_zz", "e_xy", "e_xz", "e_yz")}}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/")
    return 0


def cmd_track(args) -> int:
    from .io._outdir import output_folder
    from .model.tracker import NucleusTracker

    if len(args.times) != len(args.models):
        raise ValueError(f"--times has {len(args.times)} values but {len(args.models)} models "
                         f"were given; pass one annealing time (min) per model")
    out = _check_folder(args.output, args.overwrite,
                        ("nuclei.csv", "events.csv", "tracks.csv", "links.csv", "summary.json",
                         "tracked.xyz"))
    models = [_expect(_open(p, kind="model"), "AtomicModel", p) for p in args.models]
    tracker = NucleusTracker(models, times_min=args.times)
    res = tracker.track(threshold=args.threshold)
    with output_folder(out, overwrite=args.overwrite, flag="--overwrite") as tmp:
        for name in ("nuclei", "events", "tracks", "links"):
            getattr(res, name).to_csv(tmp / f"{name}.csv", index=False)
        from .core.meta import to_jsonable

        (tmp / "summary.json").write_text(json.dumps(
            {"times_min": list(map(float, args.times)), "models": list(map(str, args.models)),
             "threshold": args.threshold, "events": res.event_counts(),
             "summary": to_jsonable(res.summary())}, indent=2) + "\n")
        tracker.write_extxyz(tmp / "tracked.xyz", res)
    print(repr(res))
    print(f"wrote {out}/ (nuclei.csv, events.csv, tracks.csv, links.csv, tracked.xyz)")
    return 0


def cmd_export(args) -> int:
    if args.format in ("csv", "xyz", "cif", "poscar"):
        ext = {"csv": ".csv", "xyz": ".xyz", "cif": ".cif", "poscar": ".vasp"}[args.format]
        out = Path(args.output)
        if out.suffix.lower() not in (ext, ".extxyz") and out.name not in ("POSCAR", "CONTCAR"):
            raise ValueError(f"--format {args.format} writes {ext} files; {str(out)!r} has "
                             f"another extension")
        _check_output(out, "model", args.overwrite)
        model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
        _write(model, out, args.overwrite)
        return 0
    out = _check_folder(args.output, args.overwrite)
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    model.dft_inputs(out, radius_A=args.radius, preset=args.preset, codes=(args.format,),
                      overwrite=args.overwrite)
    print(f"wrote {out}/ (manifest.json says what each calculation is for)")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(
        prog="aet", description="Atomic electron tomography: tilt series → atoms → physics.",
        epilog="Run 'aet COMMAND --help' for the options of a command.")
    p.add_argument("--version", action="version", version=f"aet {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help="show the Python traceback of input errors too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def tilt_input(sp):
        sp.add_argument("--angles", metavar="ANGLES",
                        help="tilt angles, degrees: a file (IMOD .tlt/.rawtlt, SerialEM .mdoc, "
                             "text with one angle or φ θ ψ per line, .mat) or a comma-separated "
                             "list; default: from the file or a sidecar next to it")
        sp.add_argument("--pixel-size", type=_positive("--pixel-size"), metavar="Å",
                        help="pixel size in Å (overrides the file's)")
        sp.add_argument("--frames-per-angle", type=_positive("--frames-per-angle",
                                                             integer=True), metavar="N",
                        help="frames recorded at each tilt (movie stacks)")
        sp.add_argument("--euler-convention", choices=["zyz", "zyx", "genfire", "resire"],
                        help="convention of (n, 3) Euler angles read from .mat/.emd files")

    def overwrite(sp):
        sp.add_argument("--overwrite", action="store_true",
                        help="replace an existing output (in folders, only what aet wrote)")

    rn = sub.add_parser("run", help="the whole pipeline on your own tilt series: atoms, "
                                     "species, uncertainty, report",
                        description="Run the whole default pipeline (aet.run) on a tilt "
                                    "series: frames, background, alignment, denoising, "
                                    "reconstruction, tracing, classification, clean-up, "
                                    "refinement, uncertainty; writes the model, the volume, "
                                    "the decisions taken and a report into --out.")
    rn.add_argument("file", help="tilt series (MRC, TIFF, DM3/4, EMD, SER, .mat, Zarr, ...)")
    rn.add_argument("--species", nargs="+", required=True, metavar="EL",
                    help="elements in the sample, e.g. --species Fe,Pt (any order)")
    rn.add_argument("--out", required=True, help="output folder")
    tilt_input(rn)
    rn.add_argument("--method", choices=["genfire", "resire", "sirt", "wbp"],
                    help="reconstruction method (default: aet's default)")
    rn.add_argument("--iterations", type=_positive("--iterations", integer=True), metavar="N",
                    help="reconstruction iterations (default: the method's)")
    rn.add_argument("--tilt-axis", metavar="DEG",
                    help="tilt-axis rotation in the image: 'estimate' (default), 'none' (the "
                         "axis already lies along y) or degrees")
    rn.add_argument("--min-distance", type=_positive("--min-distance"), default=2.0,
                    metavar="Å", help="minimum distance between atoms (default 2.0 Å)")
    rn.add_argument("--no-denoise", action="store_true", help="skip BM3D denoising")
    rn.add_argument("--no-refine", action="store_true",
                    help="skip refinement against the projections")
    rn.add_argument("--no-report", action="store_true", help="do not write report.html")
    rn.add_argument("--no-progress", action="store_true", help="hide progress bars")
    overwrite(rn)
    rn.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="simulate an FePt nanoparticle and run the whole pipeline",
                       description="Simulate an FePt nanoparticle tilt series, run the whole "
                                   "pipeline and write the results and a report.")
    d.add_argument("--size", default="small", choices=["small", "standard", "large"],
                   help="benchmark size (default: small, about a minute on 2 cores)")
    d.add_argument("--out", default="aet-demo-output", help="output folder")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--method", default="resire", choices=["genfire", "resire", "sirt", "wbp"])
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    overwrite(d)
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="describe a file (kind, shape, metadata, provenance)")
    i.add_argument("file")
    i.add_argument("--kind", choices=["tilt_series", "volume", "model"])
    tilt_input(i)
    i.add_argument("--voxel-size", type=_positive("--voxel-size"), metavar="Å",
                   help="voxel size in Å (volumes)")
    i.set_defaults(func=cmd_info)

    pp = sub.add_parser("preprocess", help="register frames, remove the background, align, "
                                           "denoise a tilt series")
    pp.add_argument("input")
    pp.add_argument("output", help="output file (.zarr, .mrc, .tif, .nc, .npz)")
    pp.add_argument("--steps", default="register,background,align,denoise",
                    help="comma-separated, run in this order: register, background, align, "
                         "denoise (default: all four, the demo's order)")
    tilt_input(pp)
    overwrite(pp)
    pp.set_defaults(func=cmd_preprocess)

    r = sub.add_parser("reconstruct", help="reconstruct a volume from a tilt series")
    r.add_argument("input")
    r.add_argument("output", help="output file (.zarr, .mrc, .tif, .nc, .npz)")
    r.add_argument("--method", default="resire", choices=["genfire", "resire", "sirt", "wbp"])
    r.add_argument("--iterations", type=_positive("--iterations", integer=True), metavar="N",
                   help="iterations (default: resire 300 passes at most, stopped on held-out "
                        "projections; genfire 50; sirt 500; the demo uses 100)")
    tilt_input(r)
    overwrite(r)
    r.set_defaults(func=cmd_reconstruct)

    t = sub.add_parser("trace", help="trace atoms in a volume")
    t.add_argument("input")
    t.add_argument("output", help="model file (.csv, .xyz, .cif, .vasp, .zarr, .nc)")
    t.add_argument("--min-distance", type=_positive("--min-distance"), default=2.0,
                   metavar="Å", help="minimum distance between atoms, Å (default 2.0)")
    t.add_argument("--voxel-size", type=_positive("--voxel-size"), metavar="Å",
                   help="voxel size in Å if the file lacks it")
    overwrite(t)
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("classify", help="assign species to traced atoms")
    c.add_argument("model")
    c.add_argument("volume")
    c.add_argument("output")
    c.add_argument("--species", nargs="+", required=True,
                   help="light → heavy, e.g. Fe Pt (or Fe,Pt)")
    overwrite(c)
    c.set_defaults(func=cmd_classify)

    cu = sub.add_parser("cleanup", help="drop isolated peaks (and merge too-close pairs)",
                        description="Drop atoms with fewer than --min-neighbours neighbours "
                                    "within --radius: noise and support-film peaks outside a "
                                    "particle. The defaults are what aet demo does.")
    cu.add_argument("model")
    cu.add_argument("output")
    cu.add_argument("--min-neighbours", type=_nonneg_int("--min-neighbours"), default=3,
                    metavar="N", help="fewest neighbours an atom keeps (default 3)")
    cu.add_argument("--radius", type=_positive("--radius"), metavar="Å",
                    help="neighbour radius in Å (default: --radius-factor × the median "
                         "nearest-neighbour distance)")
    cu.add_argument("--radius-factor", type=_positive("--radius-factor"), default=1.15,
                    metavar="F", help="default radius in nearest-neighbour distances "
                                      "(default 1.15)")
    cu.add_argument("--min-distance", type=_positive("--min-distance"), metavar="Å",
                    help="also merge atoms closer than this (keeps the brighter)")
    cu.add_argument("--volume", metavar="VOLUME",
                    help="the reconstruction the atoms were traced in (a particle): also drop "
                         "groups of peaks at the faces of its box that are not the particle, "
                         "as aet run does")
    overwrite(cu)
    cu.set_defaults(func=cmd_cleanup)

    rf = sub.add_parser("refine", help="refine a model against the projections")
    rf.add_argument("model")
    rf.add_argument("tilts", help="the aligned tilt series (background removed)")
    rf.add_argument("output")
    rf.add_argument("--refine-alignment", metavar="WHAT",
                    help="also fit the per-projection alignment: comma-separated shifts, "
                         "angles (or phi, theta, psi); the demo uses shifts,angles")
    rf.add_argument("--tilts-output", metavar="PATH",
                    help="with --refine-alignment: write the tilt series with the fitted "
                         "alignment applied (images moved back by the shifts, angles "
                         "corrected), the series to give a later refine")
    rf.add_argument("--add-remove", action="store_true",
                    help="add atoms where the residual shows them, remove those it does not "
                         "support (as the demo does)")
    tilt_input(rf)
    overwrite(rf)
    rf.set_defaults(func=cmd_refine)

    a = sub.add_parser("analyze", help="chemical order and strain of a model (NetCDF files)")
    a.add_argument("model")
    a.add_argument("output", help="output folder")
    a.add_argument("--order", choices=["L10", "L12", "none"], default="L10",
                   help="order parameters of this phase (default L10)")
    a.add_argument("--strain", action="store_true", help="also the strain tensor field")
    a.add_argument("--structure", default="auto",
                   choices=["auto", "fcc", "bcc", "hcp", "L10", "L12"],
                   help="strain reference lattice (default: the structure the model has)")
    overwrite(a)
    a.set_defaults(func=cmd_analyze)

    tr = sub.add_parser("track", help="track nuclei across annealing times (4D AET)")
    tr.add_argument("models", nargs="+", help="one model per time, in time order")
    tr.add_argument("--times", type=float, nargs="+", required=True, metavar="MIN",
                    help="annealing time of each model, minutes")
    tr.add_argument("--threshold", type=_positive("--threshold"), default=0.3,
                    help="order parameter above which an atom belongs to a nucleus")
    tr.add_argument("--output", required=True, metavar="DIR",
                    help="output folder: nuclei, events, tracks, links (CSV), summary.json, "
                         "tracked.xyz")
    overwrite(tr)
    tr.set_defaults(func=cmd_track)

    e = sub.add_parser("export", help="export a model (atom formats or DFT input sets)")
    e.add_argument("model")
    e.add_argument("output", help="a file for atom formats, a folder for vasp/qe")
    e.add_argument("--format", default="vasp",
                   choices=["vasp", "qe", "csv", "xyz", "cif", "poscar"])
    e.add_argument("--preset", default="magnetic_anisotropy",
                   choices=["scf", "magnetic_anisotropy"], help="DFT preset")
    e.add_argument("--radius", type=_positive("--radius"), default=6.0, metavar="Å",
                   help="radius (Å) of the cluster carved around the model's centre")
    overwrite(e)
    e.set_defaults(func=cmd_export)
    return p


# --------------------------------------------------------------------------- errors
#: Python keywords in aet's messages and the command-line flags that set them.
_FLAGS = [
    (r"angles=\[\.\.\.\] \(degrees\)", "--angles (a file or a comma-separated list, degrees)"),
    (r"\bkind=['\"]?(tilt_series|volume|model)['\"]?", r"--kind \1"),
    (r"\bpixel_size_A=<([^>]*)>", r"--pixel-size <\1>"),
    (r"\bvoxel_size_A=<([^>]*)>", r"--voxel-size <\1>"),
    (r"\bpixel_size_A=", "--pixel-size "), (r"\bvoxel_size_A=", "--voxel-size "),
    (r"\bpixel_size_A\b", "--pixel-size"), (r"\bvoxel_size_A\b", "--voxel-size"),
    (r"\bangles=", "--angles "), (r"\bframes_per_angle=", "--frames-per-angle "),
    (r"\beuler_convention=", "--euler-convention "), (r"\boverwrite=True\b", "--overwrite"),
    (r"\bspecies=\[.Fe., .Pt.\]", "--species Fe,Pt"), (r"\bspecies=", "--species "),
    (r"\bn_iter\b", "--iterations"), (r"\bmin_distance_A\b", "--min-distance"),
    (r"\bmin_neighbours\b", "--min-neighbours"), (r"\bradius_A\b", "--radius"),
    (r"\brefine_alignment\b", "--refine-alignment"), (r"\btimes_min\b", "--times"),
    (r"\(e\.g\. os\.makedirs\)", "(mkdir -p)"), (r"os\.makedirs", "mkdir -p"),
]


def cli_words(message: str) -> str:
    """Rewrite the Python keywords in an error message as the command line's flags."""
    for pat, rep in _FLAGS:
        message = re.sub(pat, rep, message)
    return message


def _raised_by_aet(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc``'s traceback is aet's own code (its input
    checks), not a library it calls (where the same class means a bug in how aet called it)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    root = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(root + os.sep)


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, (AetError, *_FILE_ERRORS)):
        return True
    return type(exc) is ValueError and _raised_by_aet(exc)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"aet: warning: {cli_words(str(message))}", file=sys.stderr)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _join_negative_lists(argv: list[str]) -> list[str]:
    """``--angles -60,-45,...``: argparse would take the list for an option; join it."""
    out = list(argv)
    i = 0
    while i < len(out) - 1:
        if out[i] == "--angles" and re.match(r"^-\.?\d", out[i + 1]):
            out[i:i + 2] = [f"--angles={out[i + 1]}"]
        i += 1
    return out


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_lists(sys.argv[1:] if argv is None else argv))
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    filters = warnings.catch_warnings()
    filters.__enter__()
    warnings.simplefilter("always", AngleUnitWarning)  # aet's own warnings always reach you
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:  # the reader went away (aet info ... | head): not an error
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print("aet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc) or args.traceback:
            raise
        msg = cli_words(str(exc)) if not isinstance(exc, KeyError) else cli_words(
            str(exc.args[0]) if exc.args else "")
        print(f"aet {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        filters.__exit__(None, None, None)
        warnings.showwarning = old_show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
