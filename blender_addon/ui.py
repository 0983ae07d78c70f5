"""Sidebar panels in the 3D viewport and the Video Sequencer (same content:
``draw_panel``), and the local bridge's buttons (Start, Stop, Restart,
Install Bridge). Drawing reads properties and ``panel_model``'s caches only;
it never calls the network."""

from __future__ import annotations

import logging

import bpy

from . import compat, host, panel_model, runtime
from ._deps import errors
from .props import ADDON_ID

log = logging.getLogger(__name__)


class GREENLIGHT_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=item.label)
        row.label(text=item.state)
        row.label(text=f"{item.frames_done}/{item.frame_count}")


def _lines(layout, lines, icon: str = "NONE", alert: bool = False) -> None:
    col = layout.column(align=True)
    col.alert = alert
    for i, text in enumerate(panel_model.wrap(list(lines))):
        col.label(text=text, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


def _stacked(layout, data, prop: str, label: str) -> None:
    """A label above a full-width field (long text: nothing is cut in a narrow sidebar)."""
    col = layout.column(align=True)
    col.use_property_split = False
    col.label(text=label)
    col.prop(data, prop, text="")


def draw_bridge(layout, context, address: str) -> None:
    addon = context.preferences.addons.get(ADDON_ID)
    if runtime.use_local_bridge():
        _lines(layout, [runtime.bridge_status()], icon="NETWORK_DRIVE")
    elif addon is not None:
        layout.prop(addon.preferences, "address", text="Address")
    else:   # registered without being enabled (a source checkout): the environment's address
        _lines(layout, [f"Address: {address}"])
    caps = panel_model.FETCHER.capabilities_for(address)
    _lines(layout, panel_model.capabilities_lines(caps), icon="ERROR" if caps is not None and caps.error else "INFO",
           alert=caps is not None and bool(caps.error))
    layout.operator("greenlight.refresh", icon="FILE_REFRESH")


def draw_shot(layout, scene) -> None:
    g = scene.greenlight
    layout.prop(g, "project")
    layout.prop(g, "shot")
    try:
        shot = host.convert.tag(g.shot or scene.name, "shot")
        layout.label(text=f"Next: {shot}/v{host.next_version_in_blender(scene, shot):03d}"[:panel_model.LINE_CHARS])
    except errors.GreenlightError as exc:  # a bad name: the Generate button reports it
        _lines(layout, [str(exc)], icon="ERROR", alert=True)
    layout.prop(g, "use_scene_range")
    if not g.use_scene_range:
        col = layout.column(align=True)
        col.prop(g, "frame_start")
        col.prop(g, "frame_end")
    layout.prop(g, "resolution_scale")
    r = scene.render
    try:
        w, h = host.convert.pass_resolution(r.resolution_x, r.resolution_y, r.resolution_percentage,
                                            g.resolution_scale, None, None)
        layout.label(text=f"Passes and frames: {w} x {h} px")
    except errors.GreenlightError as exc:
        _lines(layout, [str(exc)], icon="ERROR", alert=True)


def draw_generation(layout, scene, address: str) -> None:
    g = scene.greenlight
    _stacked(layout, g, "prompt", "Prompt")
    _stacked(layout, g, "negative_prompt", "Negative prompt")
    layout.prop(g, "backend_choice", text="Backend")
    choice = next((b for b in panel_model.backend_choices(panel_model.FETCHER.capabilities_for(address))
                   if b.id == g.backend), None)
    if choice is not None and not choice.available:
        _lines(layout, [f"Unavailable: {choice.unavailable_reason or 'the bridge cannot run it'}"], icon="ERROR",
               alert=True)
    layout.prop(g, "seed")
    layout.prop(g, "steps")
    col = layout.column(align=True)
    col.prop(g, "depth_strength")
    col.prop(g, "pose_strength")


def draw_scheduling(layout, scene) -> None:
    g = scene.greenlight
    layout.prop(g, "priority")
    if g.priority == "BATCH":
        layout.prop(g, "deadline_hours")


def current_estimate_key(scene, address: str):
    """The inputs an estimate would be made for now (None when the settings cannot make a shot)."""
    try:
        return host.estimate_request_in_blender(scene, address).key
    except errors.GreenlightError:
        return None


def draw_cost(layout, scene, address: str) -> None:
    result = panel_model.FETCHER.estimate_for(scene.name)
    col = layout.column(align=True)
    for line in panel_model.cost_lines(result, current_estimate_key(scene, address)):
        row = col.row()
        row.alert = line.alert
        row.active = not line.dim
        row.label(text=line.text, icon=line.icon)
    layout.operator("greenlight.estimate", icon="SORTTIME")


def draw_jobs(layout, scene) -> None:
    g = scene.greenlight
    layout.template_list("GREENLIGHT_UL_jobs", "", g, "jobs", g, "active_job", rows=3)
    if not 0 <= g.active_job < len(g.jobs):
        return
    rec = g.jobs[g.active_job]
    box = layout.box()
    _lines(box, [f"{rec.label}: {rec.state}", f"Job {rec.job_id}", f"{rec.backend}, seed {rec.seed}"])
    if rec.message:
        _lines(box, [rec.message], icon="INFO")
    kind = "measured" if rec.measured else "estimated"
    _lines(box, [f"{panel_model.format_energy(rec.energy_wh)} ({kind})",
                 f"{panel_model.format_co2e(rec.co2e_g)} (location-based)"])
    if rec.sci_unit:
        _lines(box, [f"SCI {rec.sci:.4g} {rec.sci_unit}"])
    if not rec.finished:
        box.progress(factor=rec.frames_done / max(rec.frame_count, 1), text=f"{rec.frames_done}/{rec.frame_count}")
    col = box.column(align=True)
    col.operator("greenlight.cancel", icon="CANCEL")
    col.operator("greenlight.run_now", icon="PLAY")
    col.operator("greenlight.redownload", icon="IMPORT")


SECTIONS = ("bridge", "shot", "generation", "scheduling", "cost")


def draw_panel(layout, context):
    """The sidebar: Bridge, Shot, Generation, Scheduling and Cost sections, then
    Generate Previz and the jobs. Property split layout (labels left, fields
    right) with short labels; prompts stacked (label above a full-width field);
    long texts wrapped: readable at the default sidebar width."""
    scene = context.scene
    layout.use_property_split = True
    layout.use_property_decorate = False
    address = host.bridge_address_in_blender(context)
    _, body = compat.section_in_blender(layout, "greenlight_bridge", "Bridge", icon="NETWORK_DRIVE")
    if body is not None:
        draw_bridge(body, context, address)
    _, body = compat.section_in_blender(layout, "greenlight_shot", "Shot", icon="SEQUENCE")
    if body is not None:
        draw_shot(body, scene)
    _, body = compat.section_in_blender(layout, "greenlight_generation", "Generation", icon="SHADERFX")
    if body is not None:
        draw_generation(body, scene, address)
    _, body = compat.section_in_blender(layout, "greenlight_scheduling", "Scheduling", icon="SORTTIME")
    if body is not None:
        draw_scheduling(body, scene)
    _, body = compat.section_in_blender(layout, "greenlight_cost", "Cost (estimate)", icon="FUND")
    if body is not None:
        draw_cost(body, scene, address)
    col = layout.column()
    col.scale_y = 1.4
    col.operator("greenlight.generate", icon="RENDER_ANIMATION")
    status = getattr(context.window_manager, "greenlight_status", "")
    if status:
        _lines(layout, [status])
    if scene.greenlight.jobs:
        _, body = compat.section_in_blender(layout, "greenlight_jobs", "Jobs", icon="RENDERLAYERS")
        if body is not None:
            draw_jobs(body, scene)


def menu_block_script(self, context) -> None:
    """File > Import > Screenplay as Blocked Shots: the "Block Shots from Script" operator's file browser."""
    self.layout.operator("greenlight.block_script", text="Screenplay as Blocked Shots (.fountain, .fdx)")


class GREENLIGHT_PT_view3d(bpy.types.Panel):
    bl_label = "Greenlight Previz"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Greenlight"

    def draw(self, context):
        draw_panel(self.layout, context)


class GREENLIGHT_PT_sequencer(bpy.types.Panel):
    bl_label = "Greenlight Previz"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Greenlight"

    def draw(self, context):
        draw_panel(self.layout, context)


class _BridgeOperator(bpy.types.Operator):
    def execute(self, context):
        try:
            self.act()
        except errors.GreenlightError as exc:
            log.info("local bridge: %s", exc)
            self.report({"ERROR"}, str(exc).splitlines()[0])
            return {"CANCELLED"}
        self.report({"INFO"}, runtime.bridge_status())
        return {"FINISHED"}


class GREENLIGHT_OT_bridge_start(_BridgeOperator):
    """Start the local Greenlight bridge (a free loopback port and a fresh token)"""

    bl_idname = "greenlight.bridge_start"
    bl_label = "Start"

    def act(self):
        runtime.start_local_bridge()


class GREENLIGHT_OT_bridge_stop(_BridgeOperator):
    """Stop the local Greenlight bridge"""

    bl_idname = "greenlight.bridge_stop"
    bl_label = "Stop"

    def act(self):
        runtime.stop_local_bridge()


class GREENLIGHT_OT_bridge_restart(_BridgeOperator):
    """Stop and start the local Greenlight bridge"""

    bl_idname = "greenlight.bridge_restart"
    bl_label = "Restart"

    def act(self):
        runtime.restart_local_bridge()


class GREENLIGHT_OT_bridge_install(_BridgeOperator):
    """Create the add-on's own Python environment for the bridge and pip install Greenlight into it
    (needs online access; minutes)"""

    bl_idname = "greenlight.bridge_install"
    bl_label = "Install Bridge"

    def act(self):
        if not bpy.app.online_access:
            raise errors.PreconditionError("installing the bridge downloads packages: enable Preferences > System > "
                                           "Network > Allow Online Access, or set Bridge Python")
        runtime.install_local_bridge()


CLASSES = (GREENLIGHT_UL_jobs, GREENLIGHT_PT_view3d, GREENLIGHT_PT_sequencer, GREENLIGHT_OT_bridge_start,
           GREENLIGHT_OT_bridge_stop, GREENLIGHT_OT_bridge_restart, GREENLIGHT_OT_bridge_install)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_block_script)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_block_script)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
