"""Run by Unreal's Python plugin at editor start-up (every enabled plugin's
Content/Python/init_unreal.py is). Registers the Greenlight menus only;
nothing heavy is imported until a command runs."""

import unreal

try:
    from greenlight_unreal import host

    for name in host.register_menus_in_unreal():
        unreal.log(f"Greenlight: registered {name}")
except Exception as exc:   # never break editor start-up; say what went wrong
    unreal.log_error(f"Greenlight: could not register menus: {exc!r}")
