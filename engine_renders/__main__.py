"""``python -m engine_renders NAME OUT``: render sample shot NAME (or reuse
the cached one) and write ``OUT/NAME.glshot``; ``all`` renders every sample.

Exit codes: 0 done, 2 bad input or Blender (bpy) missing or failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from bridge.errors import GreenlightError

from . import DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH, SAMPLES, render


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine_renders",
                                description="Render Greenlight's sample shots with Blender headless.",
                                epilog="samples: " + "; ".join(f"{k}: {v}" for k, v in SAMPLES.items()))
    p.add_argument("name", choices=[*SAMPLES, "all"])
    p.add_argument("out", help="folder for NAME.glshot")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--cache-dir",
                   help="default: $GREENLIGHT_ENGINE_RENDERS_CACHE or ~/.cache/greenlight/engine_renders")
    p.add_argument("--force", action="store_true", help="render even when the cache has the shot")
    p.add_argument("--blend", action="store_true", help="also write OUT/NAME.blend (the scene as built)")
    args = p.parse_args(argv)
    names = list(SAMPLES) if args.name == "all" else [args.name]
    try:
        for name in names:
            t0 = time.perf_counter()
            result = render(name, args.out, args.width, args.height, args.frames, cache_dir=args.cache_dir,
                            force=args.force, save_blend=args.blend)
            how = "from the cache" if result.cached else f"rendered with Blender {result.info.get('bpy', '')}"
            print(f"{result.path}  ({name}, {args.width}x{args.height} x {args.frames} frames, {how}, "
                  f"{time.perf_counter() - t0:.1f} s)")
    except GreenlightError as exc:
        print(f"engine_renders: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
