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


def _connection_changed(prefs, context):
    """The bridge address, TLS or token changed: ask that bridge for its backends (on a thread)."""
    from . import runtime

    runtime.refresh_capabilities(quiet=True)


class GreenlightPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    address: StringProperty(name="Bridge address", default="127.0.0.1:50151", update=_connection_changed,
                            description="host:port of the Greenlight bridge (`greenlight serve`)")
    use_tls: BoolProperty(name="TLS", default=False, update=_connection_changed,
                          description="Connect with TLS (system root certificates)")
    token: StringProperty(name="Token", default="", subtype="PASSWORD", update=_connection_changed,
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

    job_id: StringProperty(name="Job id", description="The id the bridge gave this job")
    address: StringProperty(name="Bridge address", description="host:port of the bridge that runs this job")
    project: StringProperty(name="Project", description="The job's project tag")
    shot: StringProperty(name="Shot", description="The job's shot tag")
    version: IntProperty(name="Version", min=1, description="The shot version this job makes (vNNN)")
    backend: StringProperty(name="Backend", description="The generation backend the job runs on")
    seed: IntProperty(name="Seed", min=0, description="The seed the job was sent with")
    state: StringProperty(name="State", default=jobs.JobState.QUEUED.value,
                          description="A bridge.jobs JobState value")
    message: StringProperty(name="Message", description="The bridge's last word on the job (why it failed, ...)")
    folder: StringProperty(name="Frames folder", subtype="DIR_PATH", description="Where the job's frames are written")
    frame_start: IntProperty(name="First frame", description="The scene frame of the shot's first frame")
    frame_count: IntProperty(name="Frames", min=0, description="Frames the job makes")
    frames_done: IntProperty(name="Frames received", min=0, description="Final frames received so far")
    energy_wh: FloatProperty(name="Energy (Wh)", precision=6, description="IT energy of the job so far, watt-hours")
    co2e_g: FloatProperty(name="gCO2e (location-based)", precision=6,
                          description="Location-based carbon of the job so far, grams CO2e")
    sci: FloatProperty(name="SCI", precision=6, description="Software Carbon Intensity score (ISO/IEC 21031)")
    sci_unit: StringProperty(name="SCI unit", description="What the SCI score is per (e.g. per second of animatic)")
    temporal_gap1: FloatProperty(
        name="Flicker (gap 1)", default=-1.0, precision=4,
        description="Temporal consistency: mean colour difference (0-1) between consecutive frames along the "
                    "engine's motion, occluded pixels left out (docs/temporal.md); -1 = not computed")
    recipe_hash: StringProperty(
        name="Recipe", description="Short hash of what made the frames: model components, settings, seed and "
                                   "inputs (docs/governance.md); `greenlight replay JOB` re-makes them")
    temporal_trajectory: FloatProperty(
        name="Drift (8 frames)", default=-1.0, precision=4,
        description="The same along 8-frame trajectories; -1 = not computed")
    measured: BoolProperty(name="Measured", description="Energy measured by a meter (else estimated)")

    @property
    def label(self) -> str:
        return f"{self.shot}/v{self.version:03d}"

    @property
    def finished(self) -> bool:
        return jobs.JobState.parse(self.state).terminal


def _backend_items(settings, context):
    """The backend list from the cached GetCapabilities answer of the bridge in
    use (never the network: see panel_model), with the stored choice kept."""
    from . import host, panel_model

    try:
        address = host.bridge_address_in_blender(context or bpy.context)
    except Exception:  # an items callback must never raise: Blender shows an empty list then
        address = ""
    caps = panel_model.FETCHER.capabilities_for(address)
    return panel_model.backend_items(panel_model.backend_choices(caps), settings.backend)


def _backend_get(settings) -> int:
    from . import panel_model

    return panel_model.backend_number(settings.backend or panel_model.GUIDES)


def _backend_set(settings, number: int) -> None:
    from . import panel_model

    backend = panel_model.backend_for_number(number)
    if backend is not None:
        settings.backend = backend


class GreenlightSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", default="", description="What the previz should look like")
    negative_prompt: StringProperty(name="Negative prompt", default="",
                                    description="What the previz should avoid (backends without one ignore it)")
    # The stored choice is this string (saved in the .blend, set by scripts); ``backend_choice`` is the
    # list the panel shows, filled from the bridge's capabilities.
    backend: StringProperty(name="Backend id", default="guides",
                            description="Generation backend id on the bridge (guides = conditioning preview)")
    backend_choice: EnumProperty(name="Backend", items=_backend_items, get=_backend_get, set=_backend_set,
                                 description="Generation backend on the bridge; the list comes from the bridge "
                                             "(press Refresh); unavailable ones are marked and say why")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED,
                      description="Random seed: the same seed and settings give the same frames")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000,
                       description="Denoising steps; 0 = backend default")
    depth_strength: FloatProperty(name="Depth", default=1.0, min=0.0, max=10.0,
                                  description="How strongly the depth pass steers the image; 0 = off")
    pose_strength: FloatProperty(name="Pose", default=1.0, min=0.0, max=10.0,
                                 description="How strongly the characters' poses steer the image; 0 = off")
    use_scene_range: BoolProperty(name="Scene range", default=True,
                                  description="Use the scene's frame range (off: Start and End below)")
    frame_start: IntProperty(name="Start", default=1, min=0,
                             description="First frame of the shot (when Scene range is off)")
    frame_end: IntProperty(name="End", default=48, min=0,
                           description="Last frame of the shot, included (when Scene range is off)")
    resolution_scale: FloatProperty(name="Resolution", default=0.25, min=0.05, max=1.0, subtype="FACTOR",
                                    description="Fraction of the render resolution the passes and frames use")
    priority: EnumProperty(name="Priority", default="INTERACTIVE",
                           description="Run now, or let the scheduler pick a greener time and site", items=(
                               ("INTERACTIVE", "Interactive", "Run now on the nearest free device"),
                               ("BATCH", "Batch", "May wait for a greener window or site, "
                                                  "finishing before the deadline")))
    deadline_hours: FloatProperty(name="Deadline (h)", default=8.0, min=0.1, max=24 * 14,
                                  description="Batch jobs: hours from now by which the frames must be done")
    project: StringProperty(name="Project", default="previz",
                            description="Project tag: groups shots on the bridge (a token may be bound to one)")
    shot: StringProperty(name="Shot", default="", description="Shot name; empty = the scene's name")
    jobs: CollectionProperty(type=GreenlightJob, description="The jobs submitted from this scene")
    active_job: IntProperty(name="Active job", default=0, description="The job shown below the list")


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
