"""Shot files: ``greenlight shot sample | inspect | usd``, and ``otio``
(an editorial timeline over a shot's versions)."""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK


def add_parsers(sub) -> None:
    sp = sub.add_parser("shot", help="shot files")
    shot_sub = sp.add_subparsers(dest="shot_command", required=True)
    ssp = shot_sub.add_parser("sample", help="write the synthetic sample shot")
    ssp.add_argument("out")
    ssp.add_argument("--frames", type=int, default=48)
    ssp.add_argument("--width", type=int, default=512)
    ssp.add_argument("--height", type=int, default=288)
    ssp.set_defaults(func=cmd_shot_sample)
    ssp = shot_sub.add_parser("inspect", help="validate and summarise a shot file")
    ssp.add_argument("file")
    ssp.set_defaults(func=cmd_shot_inspect)
    ssp = shot_sub.add_parser("usd", help="write a shot file's camera as USD (Z-up, cm, mm lens)")
    ssp.add_argument("file")
    ssp.add_argument("out", help=".usda (text) or .usdc/.usd (binary)")
    ssp.set_defaults(func=cmd_shot_usd)

    sp = sub.add_parser("otio", help="OpenTimelineIO timeline of a shot's versions, for editorial")
    sp.add_argument("folder", help="out/<project>/<shot>/ (every vNNN) or one vNNN folder")
    sp.add_argument("--out", help="timeline file (default: <folder>/<shot>.otio)")
    sp.set_defaults(func=cmd_otio)


def cmd_shot_sample(args) -> int:
    from ..shot.files import save_shot
    from ..shot.synthetic import sample_shot

    shot = sample_shot(frames=args.frames, width=args.width, height=args.height)
    print(f"wrote {save_shot(shot, args.out)} ({shot.frame_count} frames, {shot.width}x{shot.height})")
    return EXIT_OK


def cmd_shot_inspect(args) -> int:
    from ..shot import validate_shot
    from ..shot.files import load_shot

    shot = load_shot(args.file)
    validate_shot(shot)
    print(f"{shot.tags.project}/{shot.tags.shot} v{shot.tags.version}: {shot.frame_count} frames at "
          f"{shot.fps.numerator}/{shot.fps.denominator} fps ({shot.duration_s:.2f} s), {shot.width}x{shot.height}")
    print(f"passes: {', '.join(shot.passes) or 'none'}; methods: {dict(shot.pass_methods)}; "
          f"source: {shot.source or '?'}")
    first, last = shot.frames[0].camera, shot.frames[-1].camera
    print(f"camera: {first.focal_length_mm:g} mm -> {last.focal_length_mm:g} mm, moves "
          f"{float(((last.position_m - first.position_m) ** 2).sum() ** 0.5):.3f} m")
    print("valid: yes")
    return EXIT_OK


def cmd_shot_usd(args) -> int:
    from ..shot.files import load_shot
    from ..shot.usd_io import export_camera_usd

    shot = load_shot(args.file)
    print(f"wrote {export_camera_usd(shot, args.out)} ({shot.frame_count} frames, camera only)")
    return EXIT_OK


def cmd_otio(args) -> int:
    from ..client.otio_export import write_otio, write_shot_otio

    folder = Path(args.folder)
    if (folder / "report.json").is_file():  # one version folder
        path = write_otio([folder], args.out or folder / f"{folder.parent.name}_{folder.name}.otio")
    else:                                   # out/<project>/<shot>/ with vNNN folders
        path = write_shot_otio(folder, args.out)
    print(f"wrote {path}")
    return EXIT_OK
