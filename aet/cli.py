"""The ``aet`` command line: ``aet demo`` and one subcommand per stage on files.

Every subcommand has ``--help``, prints a clear one-line error and exits non-zero on failure,
and writes its outputs atomically (temp name + rename).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AetError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _metadata(args) -> dict:
    md = {}
    if getattr(args, "angles", None):
        md["angles"] = _read_angles(args.angles)
    if getattr(args, "pixel_size", None) is not None:
        md["pixel_size_A"] = args.pixel_size
    if getattr(args, "voxel_size", None) is not None:
        md["voxel_size_A"] = args.voxel_size
    return md


def _read_angles(spec: str):
    import numpy as np

    p = Path(spec)
    if p.exists():
        if p.suffix.lower() == ".mat":
            raise ValueError("--angles: give a text file (one angle or φ θ ψ per line); for "
                             ".mat angles use the Python API aet.open(..., angles=...)")
        return np.loadtxt(p, ndmin=1)
    try:
        return [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"--angles {spec!r} is neither a file nor a comma-separated list of "
                         f"degrees") from None


def _open(path, kind=None, **md):
    from . import io

    return io.open(path, kind=kind, **md)


def _expect(obj, cls_name: str, path):
    if type(obj).__name__ != cls_name:
        raise ValueError(f"{path} holds a {type(obj).__name__}; this command needs a {cls_name}")
    return obj


def _write(obj, out):
    from . import io

    out = Path(out)
    if out.suffix.lower() == ".zarr":
        io.save(obj, out)
    else:
        io.write(obj, out)
    print(f"wrote {out}")


# --------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .pipeline import run_demo

    result = run_demo(size=args.size, out=args.out, seed=args.seed, method=args.method,
                      progress=not args.no_progress)
    print(result.table())
    print(f"\nresults written to {result.out}/ (open report.html)")
    return 0


def cmd_info(args) -> int:
    obj = _open(args.file, kind=args.kind, **_metadata(args))
    print(repr(obj))
    if hasattr(obj, "data"):
        print(obj.data)
    return 0


def cmd_preprocess(args) -> int:
    ts = _expect(_open(args.input, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.input)
    for step in [s.strip() for s in args.steps.split(",") if s.strip()]:
        if step == "register" and ts.n_frames > 1:
            ts = ts.register_frames()
        elif step == "register":
            continue
        elif step == "align":
            ts = ts.align()
        elif step == "denoise":
            ts = ts.denoise()
        elif step == "background":
            ts = ts.remove_background()
        else:
            raise ValueError(f"--steps: unknown step {step!r}; choose from register, align, "
                             f"denoise, background")
    _write(ts, args.output)
    return 0


def cmd_reconstruct(args) -> int:
    ts = _expect(_open(args.input, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.input)
    kw = {}
    if args.iterations is not None:
        kw["iterations"] = args.iterations
    vol = ts.reconstruct(method=args.method, **kw)
    _write(vol, args.output)
    return 0


def cmd_trace(args) -> int:
    vol = _expect(_open(args.input, kind="volume", **_metadata(args)), "Volume", args.input)
    model = vol.trace_atoms(min_distance_A=args.min_distance)
    print(f"traced {model.n_atoms} atoms")
    _write(model, args.output)
    return 0


def cmd_classify(args) -> int:
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    vol = _expect(_open(args.volume, kind="volume"), "Volume", args.volume)
    model = model.classify(args.species, volume=vol)
    print("species counts:", model.species_counts())
    _write(model, args.output)
    return 0


def cmd_refine(args) -> int:
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    ts = _expect(_open(args.tilts, kind="tilt_series", **_metadata(args)), "TiltSeries",
                 args.tilts)
    model = model.refine(ts)
    _write(model, args.output)
    return 0


def cmd_analyze(args) -> int:
    from .io._atomic import atomic_path

    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    out = Path(args.output)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        summary = {"n_atoms": model.n_atoms, "species": model.species_counts()}
        if args.order:
            order = model.order_parameters(args.order)
            order.to_netcdf(tmp / f"order_{args.order}.nc")
            summary["order"] = args.order
        if args.strain:
            strain = model.strain()
            strain.to_netcdf(tmp / "strain.nc")
            summary["strain"] = sorted(strain.data_vars)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}/")
    return 0


def cmd_track(args) -> int:
    from .model.tracker import NucleusTracker

    models = [_expect(_open(p, kind="model"), "AtomicModel", p) for p in args.models]
    if len(args.times) != len(models):
        raise ValueError(f"--times has {len(args.times)} values but {len(models)} models were "
                         f"given; pass one annealing time (min) per model")
    tracker = NucleusTracker(models, times_min=args.times)
    events = tracker.track(threshold=args.threshold)
    print(events)
    tracker.save(args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_export(args) -> int:
    model = _expect(_open(args.model, kind="model"), "AtomicModel", args.model)
    if args.format in ("csv", "xyz", "cif", "poscar"):
        _write(model, args.output)
        return 0
    from .export import dft

    dft.cluster_inputs(model.data, args.output, radius_A=args.radius, preset=args.preset,
                       codes=(args.format,))
    print(f"wrote {args.output}/")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aet", description="Atomic electron tomography: tilt series → atoms → physics.")
    from ._version import __version__

    p.add_argument("--version", action="version", version=f"aet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def meta(sp):
        sp.add_argument("--angles", help="tilt angles: a text file (one per line, or φ θ ψ "
                                         "columns) or a comma-separated list, degrees")
        sp.add_argument("--pixel-size", type=float, help="pixel size in Å")

    d = sub.add_parser("demo", help="simulate an FePt nanoparticle and run the whole pipeline")
    d.add_argument("--size", default="small", choices=["small", "standard", "large"],
                   help="benchmark size (default: small, a few minutes on 2 cores)")
    d.add_argument("--out", default="aet-demo-output", help="output folder")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--method", default="resire", choices=["genfire", "resire", "sirt", "wbp"])
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="describe a file (shape, metadata, provenance)")
    i.add_argument("file")
    i.add_argument("--kind", choices=["tilt_series", "volume", "model"])
    meta(i)
    i.add_argument("--voxel-size", type=float, help="voxel size in Å (volumes)")
    i.set_defaults(func=cmd_info)

    pp = sub.add_parser("preprocess", help="register frames, align, denoise a tilt series")
    pp.add_argument("input")
    pp.add_argument("output", help="output file (.zarr, .mrc, .tif, ...)")
    pp.add_argument("--steps", default="register,align,denoise",
                    help="comma-separated: register, align, denoise, background")
    meta(pp)
    pp.set_defaults(func=cmd_preprocess)

    r = sub.add_parser("reconstruct", help="reconstruct a volume from a tilt series")
    r.add_argument("input")
    r.add_argument("output")
    r.add_argument("--method", default=None, choices=["genfire", "resire", "sirt", "wbp"],
                   help="default: genfire, or resire when the series shows a film")
    r.add_argument("--iterations", type=int)
    meta(r)
    r.set_defaults(func=cmd_reconstruct)

    t = sub.add_parser("trace", help="trace atoms in a volume")
    t.add_argument("input")
    t.add_argument("output", help="model file (.csv, .xyz, .cif, POSCAR, .zarr)")
    t.add_argument("--min-distance", type=float, default=2.0, help="minimum distance, Å")
    t.add_argument("--voxel-size", type=float, help="voxel size in Å if the file lacks it")
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("classify", help="assign species to traced atoms")
    c.add_argument("model")
    c.add_argument("volume")
    c.add_argument("output")
    c.add_argument("--species", nargs="+", required=True, help="light → heavy, e.g. Fe Pt")
    c.set_defaults(func=cmd_classify)

    rf = sub.add_parser("refine", help="refine a model against the projections")
    rf.add_argument("model")
    rf.add_argument("tilts")
    rf.add_argument("output")
    meta(rf)
    rf.set_defaults(func=cmd_refine)

    a = sub.add_parser("analyze", help="order parameters and strain of a model")
    a.add_argument("model")
    a.add_argument("output", help="output folder")
    a.add_argument("--order", choices=["L10", "L12"], default="L10")
    a.add_argument("--strain", action="store_true")
    a.set_defaults(func=cmd_analyze)

    tr = sub.add_parser("track", help="track nuclei across annealing times (4D AET)")
    tr.add_argument("models", nargs="+")
    tr.add_argument("--times", type=float, nargs="+", required=True, help="minutes")
    tr.add_argument("--threshold", type=float, default=0.3)
    tr.add_argument("--output", required=True, help="output .zarr")
    tr.set_defaults(func=cmd_track)

    e = sub.add_parser("export", help="export a model (atom formats or DFT input sets)")
    e.add_argument("model")
    e.add_argument("output")
    e.add_argument("--format", default="vasp",
                   choices=["vasp", "qe", "csv", "xyz", "cif", "poscar"])
    e.add_argument("--preset", default="magnetic_anisotropy",
                   choices=["scf", "magnetic_anisotropy"], help="DFT preset")
    e.add_argument("--radius", type=float, default=6.0,
                   help="radius (Å) of the cluster carved around the model's centre")
    e.set_defaults(func=cmd_export)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (AetError, ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError,
            OSError) as exc:
        print(f"aet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("aet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
