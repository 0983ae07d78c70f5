"""Greenlight for Blender: block a camera, press Generate, and previz frames
stream back onto the Video Sequencer with their energy and carbon cost.

Blender 4.2+ extension. Engine-free parts (``settings``, ``convert``,
``exr``, ``jobs``, ``deps_check``, ``panel_model``) never import bpy; ``host`` holds every
function that reads or changes Blender data. The ``bridge`` modules come from
``_vendor`` in a built extension (see ``build.py``); grpcio, protobuf and
googleapis-common-protos come from the wheels a platform zip bundles (or from
Blender's Python). ``register()`` checks they import before it registers the
operators that need them; when one is missing it registers only a notice
(preferences and sidebar panel) saying what is missing and which zip to
install (``deps_check``).
"""

from __future__ import annotations

_MODULES = ("props", "ops", "ui", "runtime")


def register():
    import importlib
    import logging

    from . import deps_check

    log = logging.getLogger(__package__)
    log.setLevel(logging.INFO)
    missing = deps_check.missing()
    if missing:
        lines = deps_check.messages(missing)
        command = deps_check.pip_command(missing)
        for line in lines:
            log.warning("Greenlight not enabled: %s", line)
        log.warning("Greenlight: to install them into Blender's Python: %s", command)
        deps_check.register_notice(lines, __package__, command)
        return
    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}").register()


def unregister():
    import importlib

    from . import deps_check

    if deps_check.notice_registered():
        deps_check.unregister_notice()
        return
    for name in reversed(_MODULES):
        importlib.import_module(f"{__package__}.{name}").unregister()
