"""``greenlight models list | check | pull | tiny``: the diffusion
backends' model profiles and whether their weights are on disk."""

from __future__ import annotations

import os
import sys

from ..errors import EXIT_BAD_INPUT, EXIT_OK, GreenlightError


def add_parsers(sub) -> None:
    sp = sub.add_parser("models", help="model profiles for the diffusion backends")
    models_sub = sp.add_subparsers(dest="models_command", required=True)
    msp = models_sub.add_parser("list", help="profiles and whether their weights are on disk")
    msp.set_defaults(func=cmd_models_list)
    msp = models_sub.add_parser("check", help="exit 0 when every component of PROFILE is on disk")
    msp.add_argument("profile")
    msp.set_defaults(func=cmd_models_check)
    msp = models_sub.add_parser("pull", help="download PROFILE's components into the Hugging Face cache")
    msp.add_argument("profile")
    msp.set_defaults(func=cmd_models_pull)
    msp = models_sub.add_parser("tiny", help="write a tiny random-weight AnimateDiff profile (offline testing)")
    msp.add_argument("out")
    msp.set_defaults(func=cmd_models_tiny)


def cmd_models_list(args) -> int:
    from ..backends.loading import missing_components
    from ..backends.profiles import available_profiles, load_profile

    print(f"{'PROFILE':24} {'FAMILY':12} {'LICENCE':52} STATE")
    for name in available_profiles():
        profile = load_profile(name)
        missing = missing_components(profile)
        state = "ready" if not missing else f"missing {', '.join(m[0] for m in missing)}"
        print(f"{name:24} {profile.family:12} {license_summary(profile):52} {state}")
        if args.verbose:
            for component, source in profile.components.items():
                print(f"    {component:18} {source}  [{profile.license(component).label()}]")
    return EXIT_OK


def license_summary(profile) -> str:
    """One cell: the licence ids, and whether every component is cleared for commercial use."""
    ids = sorted({profile.license(c).id for c in profile.components})
    uncleared = [c for c, _ in profile.uncleared()]
    verdict = "commercial: yes" if not uncleared else f"not cleared: {', '.join(uncleared)}"
    return f"{'+'.join(ids)} ({verdict})"


def cmd_models_check(args) -> int:
    from ..backends.loading import missing_components
    from ..backends.profiles import load_profile_file

    profile = load_profile_file(args.profile)   # the operator's own machine: a name or a .toml path
    missing = missing_components(profile)
    for name, source, why in missing:
        print(f"missing {name}: {source} ({why})", file=sys.stderr)
    if missing:
        print(f"fetch them with: greenlight models pull {profile.name}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{profile.name}: every component is on disk")
    return EXIT_OK


def cmd_models_pull(args) -> int:
    from ..backends.loading import pull
    from ..backends.profiles import load_profile_file

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise GreenlightError("HF_HUB_OFFLINE is set: unset it to download (on a machine with hub access)")
    for line in pull(load_profile_file(args.profile)):
        print(f"fetched {line}")
    return EXIT_OK


def cmd_models_tiny(args) -> int:
    from ..backends.tiny import build_tiny_animatediff

    path = build_tiny_animatediff(args.out)
    print(f"wrote {path} (random weights: output is noise; for offline tests and demos)")
    return EXIT_OK
