"""Every Blender Python API difference Greenlight meets, in one place
(STYLE practice 16).

Each API helper is a feature check (``hasattr`` on the object it is given),
not a ``bpy.app.version`` branch, with the version that made the change
named in a comment; ``end_process_in_blender`` works around an engine bug
the same way on every version. The versions the matrix runs
(``tests/blender_matrix.py``): the official ``bpy`` wheels 4.2.23 LTS,
4.5.15 LTS, 5.0.1 (Python 3.11) and 5.2.3 (Python 3.13); see
docs/blender.md, "Supported versions".

Used by the add-on's ``host``, the sample-shot renderer
(``engine_renders``) and the tests' scene builders. No bpy import: the
helpers take Blender objects and only touch what they are given, so the
module imports anywhere.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from typing import NoReturn


# ------------------------------------------------------------------ process exit
def end_process_in_blender(code: int = 0) -> NoReturn:
    """End a process that runs Blender as a Python module with exit status
    ``code``: flush stdout and stderr, run the ``atexit`` hooks (bpy's own
    shutdown among them), remove Blender's session temp folder, then
    ``os._exit(code)``, skipping the C++ static destructors.

    Why: in those destructors bpy 4.2.23 segfaults (exit status -11, nothing
    printed) once an add-on has registered classes (Rigify, Greenlight's
    properties; unregistering them does not help): ``~SpaceType`` ->
    ``bpy_class_free`` -> ``PyGILState_Ensure`` on the finished interpreter.
    bpy 4.5.15 hangs there for good while a Python class is still registered
    (``~GlobalState`` of its delayed-close thread). 5.0.1 and 5.2.3 exit
    cleanly, and this ends them the same way. Output and files written before
    are complete in every case. Use it as the last call of a process whose
    exit status matters.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    bpy = sys.modules.get("bpy")
    tempdir = getattr(getattr(bpy, "app", None), "tempdir", "") if bpy is not None else ""
    try:
        atexit._run_exitfuncs()  # what interpreter shutdown runs first; bpy's hook exits Blender's window manager
    finally:
        if tempdir and os.path.basename(os.path.normpath(tempdir)).startswith("blender_"):
            shutil.rmtree(tempdir, ignore_errors=True)   # normally removed by the destructors skipped here
        os._exit(code)


# ------------------------------------------------------------------ render output
def set_multilayer_exr_in_blender(image_settings) -> None:
    """Make ``image_settings`` (``RenderSettings.image_settings``) write a
    multilayer OpenEXR, the format that holds every render pass."""
    # 5.0+: ImageFormatSettings.media_type picks the kind of output first, and
    # file_format accepts 'OPEN_EXR_MULTILAYER' only once it is 'MULTI_LAYER_IMAGE'.
    # 4.2-4.5 have no media_type: file_format takes the multilayer format directly.
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    image_settings.file_format = "OPEN_EXR_MULTILAYER"


_PROBED: dict[str, bool] = {}


def vector_pass_follows_zoom_in_blender(render_passes, scratch) -> bool:
    """Whether Cycles' Vector pass includes a focal-length change between a
    frame and the next. ``render_passes`` is ``host.render_passes_in_blender``."""
    # 4.5+ (checked 4.5.15, 5.0.1, 5.2.3): the next frame is projected with its own focal length. 4.2.23
    # projects it with this frame's, so a zoom alone gives zero vectors. A behaviour, not an API name: probed
    # once a session with a 16x16 zoom-only render (~0.1 s, only for shots that zoom); nothing of it is kept.
    if "zoom" in _PROBED:
        return _PROBED["zoom"]
    import bpy

    kinds = ("scenes", "objects", "cameras", "meshes", "actions")   # removed in this order afterwards
    before = {kind: set(getattr(bpy.data, kind).keys()) for kind in kinds}
    try:
        scene = bpy.data.scenes.new("greenlight zoom probe")
        cam_data = bpy.data.cameras.new("greenlight zoom probe")
        cam = bpy.data.objects.new("greenlight zoom probe", cam_data)
        scene.collection.objects.link(cam)
        mesh = bpy.data.meshes.new("greenlight zoom probe")
        mesh.from_pydata([(-50, -50, -5), (50, -50, -5), (50, 50, -5), (-50, 50, -5)], [], [(0, 1, 2, 3)])
        scene.collection.objects.link(bpy.data.objects.new("greenlight zoom probe plane", mesh))
        # keyed at the context scene's frame, around which the render evaluates motion: the user's scene stays put
        frame = bpy.context.scene.frame_current
        for f, lens in ((frame, 20.0), (frame + 1, 40.0)):
            cam_data.lens = lens
            cam_data.keyframe_insert("lens", frame=f)
        scene.frame_start, scene.frame_end = frame, frame + 1
        ((_, motion),) = render_passes(scene, scene.view_layers[0].name, cam, [frame], 16, 16, scratch)
        # doubling the focal length moves the corner pixel 7.5 px outwards: 0 when the zoom is left out
        _PROBED["zoom"] = bool(abs(float(motion[0, 0, 0])) > 1.0)
    finally:
        for kind in kinds:
            data = getattr(bpy.data, kind)
            for name in set(data.keys()) - before[kind]:
                data.remove(data[name])
    return _PROBED["zoom"]


# ------------------------------------------------------------------ Video Sequencer
def all_strips_in_blender(sequence_editor):
    """Every strip of the editor, inside meta strips too (supports ``.get(name)``)."""
    # 4.4+: SequenceEditor.strips_all; 4.2 and 4.3 call it sequences_all (removed in 5.0).
    if hasattr(sequence_editor, "strips_all"):
        return sequence_editor.strips_all
    return sequence_editor.sequences_all


def top_strips_in_blender(sequence_editor):
    """The editor's top-level strips (the collection that creates new strips)."""
    # 4.4+: SequenceEditor.strips; 4.2 and 4.3 call it sequences (removed in 5.0).
    if hasattr(sequence_editor, "strips"):
        return sequence_editor.strips
    return sequence_editor.sequences


def new_image_strip_in_blender(sequence_editor, *, name: str, filepath: str, channel: int, frame_start: int,
                               fit_method: str = "FIT"):
    """A new image strip showing ``filepath`` (same arguments in every version:
    only the collection's name changed, see ``top_strips_in_blender``)."""
    return top_strips_in_blender(sequence_editor).new_image(name=name, filepath=filepath, channel=channel,
                                                            frame_start=frame_start, fit_method=fit_method)


# ------------------------------------------------------------------ animation
def action_fcurves_in_blender(action) -> list:
    """All F-curves of ``action``, of every ID it animates."""
    # 4.4+: slotted actions, layers > strips > channelbags (one per slot) > fcurves. One action can
    # animate several IDs: keying a camera's lens after its object puts both in the object's action
    # (checked 4.5.15, 5.0.1, 5.2.3), and 4.5.15's action.fcurves lists the first slot only (not the
    # lens). 5.0 removed action.fcurves. 4.2/4.3 (and a legacy, unslotted action later): action.fcurves.
    curves = [fc for layer in getattr(action, "layers", ()) for strip in layer.strips
              for bag in strip.channelbags for fc in bag.fcurves]
    if not curves and hasattr(action, "fcurves"):
        curves = list(action.fcurves)
    return curves


# ------------------------------------------------------------------ user interface
def section_in_blender(layout, idname: str, title: str, default_closed: bool = False, icon: str = "NONE"):
    """A collapsible section of a panel: ``(header, body)``, body None while
    it is closed. The header layout takes extra buttons after its title."""
    # 4.1+: UILayout.panel() makes a layout panel (open state kept per region); every supported
    # version has it. A layout without it (an older Blender, a test double) gets an open box.
    if hasattr(layout, "panel"):
        header, body = layout.panel(idname, default_closed=default_closed)
        header.label(text=title, icon=icon)
        return header, body
    box = layout.box()
    header = box.row()
    header.label(text=title, icon=icon)
    return header, box.column()
