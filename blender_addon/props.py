"""Blender properties: add-on preferences, the per-scene panel settings and
the per-scene job records (saved in the .blend, so jobs re-attach after a
restart). Each option is declared once with name, description, default and
limits (STYLE practice 14)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ._deps import errors, jobs

ADDON_ID = __package__
MAX_SEED = 2**31 - 1   # Blender int properties are 32-bit


def default_cache_dir() -> str:
    try:  # Blender 4.2+ extensions get a per-user writable folder
        return bpy.utils.extension_path_user(ADDON_ID, path="frames", create=True)
    except (ValueError, AttributeError):  # not installed as an extension (source checkout, tests)
        return str(Path(tempfile.gettempdir()) / "greenlight-frames")


def _local_bridge_toggled(prefs, context):
    from . import runtime

    try:
        if prefs.use_local_bridge:
            runtime.start_local_bridge()
        else:
            runtime.stop_local_bridge()
    except errors.GreenlightError as exc:   # shown in the preferences' status line
        runtime.set_status(f"Local bridge: {str(exc).splitlines()[0]}")


LOG_LINES_SHOWN = 6


class GreenlightPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    address: StringProperty(name="Bridge address", default="127.0.0.1:50151",
                            description="host:port of the Greenlight bridge (`greenlight serve`)")
    use_tls: BoolProperty(name="TLS", default=False, description="Connect with TLS (system root certificates)")
    token: StringProperty(name="Token", default="", subtype="PASSWORD",
                          description="Bearer token for a bridge that requires one (sees only its project's jobs)")
    cache_dir: StringProperty(name="Frame cache folder", default="", subtype="DIR_PATH",
                              description="Where returned frames are written (project/shot/vNNN); "
                                          "empty = the extension's user folder")
    use_local_bridge: BoolProperty(name="Use a local bridge", default=False, update=_local_bridge_toggled,
                                   description="Start `greenlight serve` on this machine (a free loopback port, "
                                               "a fresh token) and send the jobs there instead of Bridge address")
    bridge_python: StringProperty(name="Bridge Python", default="", subtype="FILE_PATH",
                                  description="Python interpreter (or venv folder) that has Greenlight installed; "
                                              "empty = the add-on's own environment (Install Bridge creates it)")
    bridge_diffusion: BoolProperty(name="Diffusion models", default=False,
                                   description="Install Bridge also installs greenlight[diffusion] (torch, "
                                               "diffusers: several GB); without it only the guides backend runs")

    def draw(self, context):
        col = self.layout.column()
        box = col.box()
        box.prop(self, "use_local_bridge")
        if self.use_local_bridge:
            draw_local_bridge(box, self)
        sub = col.column()
        sub.active = not self.use_local_bridge
        sub.prop(self, "address")
        sub.prop(self, "use_tls")
        sub.prop(self, "token")
        col.prop(self, "cache_dir")
        if not bpy.app.online_access:
            col.label(text="Online access is off: only a bridge on this machine can be used", icon="INFO")


def draw_local_bridge(layout, prefs=None) -> None:
    """Bridge Python, the buttons, the status line and the last log lines."""
    from . import runtime

    if prefs is not None:
        layout.prop(prefs, "bridge_python")
        layout.prop(prefs, "bridge_diffusion")
    row = layout.row(align=True)
    row.operator("greenlight.bridge_start", icon="PLAY")
    row.operator("greenlight.bridge_stop", icon="CANCEL")
    row.operator("greenlight.bridge_restart", icon="FILE_REFRESH")
    row.operator("greenlight.bridge_install", icon="IMPORT")
    layout.label(text=runtime.bridge_status())
    lb = runtime.LOCAL["bridge"]
    lines = runtime.LOCAL["install_lines"][-LOG_LINES_SHOWN:] if runtime.LOCAL["install"] is not None \
        else (lb.log_tail(LOG_LINES_SHOWN) if lb is not None else [])
    if lines:
        logs = layout.box().column(align=True)
        logs.scale_y = 0.7
        for line in lines:
            logs.label(text=line[-160:])


class GreenlightJob(bpy.types.PropertyGroup):
    """One submitted job of this file (name = job id)."""

    job_id: StringProperty(name="Job id")
    address: StringProperty(name="Bridge address")
    project: StringProperty(name="Project")
    shot: StringProperty(name="Shot")
    version: IntProperty(name="Version", min=1)
    backend: StringProperty(name="Backend")
    seed: IntProperty(name="Seed", min=0)
    state: StringProperty(name="State", default=jobs.JobState.QUEUED.value,
                          description="A bridge.jobs JobState value")
    message: StringProperty(name="Message")
    folder: StringProperty(name="Frames folder", subtype="DIR_PATH")
    frame_start: IntProperty(name="First frame")
    frame_count: IntProperty(name="Frames", min=0)
    frames_done: IntProperty(name="Frames received", min=0)
    energy_wh: FloatProperty(name="Energy (Wh)", precision=6)
    co2e_g: FloatProperty(name="gCO2e (location-based)", precision=6)
    sci: FloatProperty(name="SCI", precision=6)
    sci_unit: StringProperty(name="SCI unit")
    measured: BoolProperty(name="Measured", description="Energy measured by a meter (else estimated)")

    @property
    def label(self) -> str:
        return f"{self.shot}/v{self.version:03d}"

    @property
    def finished(self) -> bool:
        return jobs.JobState.parse(self.state).terminal


class GreenlightSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", default="", description="What the previz should look like")
    negative_prompt: StringProperty(name="Negative prompt", default="")
    backend: StringProperty(name="Backend", default="guides",
                            description="Generation backend id on the bridge (guides = conditioning preview)")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED)
    steps: IntProperty(name="Steps", default=0, min=0, max=1000, description="Denoising steps; 0 = backend default")
    depth_strength: FloatProperty(name="Depth strength", default=1.0, min=0.0, max=10.0)
    pose_strength: FloatProperty(name="Pose strength", default=1.0, min=0.0, max=10.0)
    use_scene_range: BoolProperty(name="Scene frame range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=48, min=0)
    resolution_scale: FloatProperty(name="Resolution", default=0.25, min=0.05, max=1.0, subtype="FACTOR",
                                    description="Fraction of the render resolution the passes and frames use")
    priority: EnumProperty(name="Priority", default="INTERACTIVE", items=(
        ("INTERACTIVE", "Interactive", "Run now on the nearest free device"),
        ("BATCH", "Batch", "May wait for a greener window or site, finishing before the deadline")))
    deadline_hours: FloatProperty(name="Deadline (hours)", default=8.0, min=0.1, max=24 * 14)
    project: StringProperty(name="Project", default="previz")
    shot: StringProperty(name="Shot", default="", description="Shot name; empty = the scene's name")
    jobs: CollectionProperty(type=GreenlightJob)
    active_job: IntProperty(name="Active job", default=0)


CLASSES = (GreenlightPreferences, GreenlightJob, GreenlightSettings)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.greenlight = PointerProperty(type=GreenlightSettings)
    bpy.types.WindowManager.greenlight_status = StringProperty(name="Greenlight status", default="")


def unregister():
    del bpy.types.WindowManager.greenlight_status
    del bpy.types.Scene.greenlight
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
