"""Greenlight for Blender: block a camera, press Generate, and previz frames
stream back onto the Video Sequencer with their energy and carbon cost.

Blender 4.2+ extension. Engine-free parts (``settings``, ``convert``,
``exr``, ``jobs``) never import bpy; ``host`` holds every function that
reads or changes Blender data. The ``bridge`` modules come from
``_vendor`` in a built extension (see ``build.py``).
"""

from __future__ import annotations

_MODULES = ("props", "ops", "ui", "runtime")


def register():
    import importlib
    import logging

    logging.getLogger(__package__).setLevel(logging.INFO)
    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}").register()


def unregister():
    import importlib

    for name in reversed(_MODULES):
        importlib.import_module(f"{__package__}.{name}").unregister()
