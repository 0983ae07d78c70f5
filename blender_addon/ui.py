"""Sidebar panels in the 3D viewport and the Video Sequencer (same content),
and the local bridge's buttons (Start, Stop, Restart, Install Bridge)."""

from __future__ import annotations

import logging

import bpy

from . import host, runtime
from ._deps import errors

log = logging.getLogger(__name__)


class GREENLIGHT_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=item.label)
        row.label(text=item.state)
        row.label(text=f"{item.frames_done}/{item.frame_count}")


def draw_panel(layout, context):
    scene = context.scene
    g = scene.greenlight
    col = layout.column()
    col.prop(g, "prompt")
    col.prop(g, "negative_prompt")
    row = col.row(align=True)
    row.prop(g, "backend")
    row.prop(g, "seed")
    col.prop(g, "steps")
    row = col.row(align=True)
    row.prop(g, "depth_strength", text="Depth")
    row.prop(g, "pose_strength", text="Pose")
    col.separator()
    col.prop(g, "use_scene_range")
    if not g.use_scene_range:
        row = col.row(align=True)
        row.prop(g, "frame_start")
        row.prop(g, "frame_end")
    col.prop(g, "resolution_scale")
    r = scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100 * g.resolution_scale)
    h = int(r.resolution_y * r.resolution_percentage / 100 * g.resolution_scale)
    col.label(text=f"About {w} x {h} px")
    col.prop(g, "priority", expand=True)
    if g.priority == "BATCH":
        col.prop(g, "deadline_hours")
    row = col.row(align=True)
    row.prop(g, "project")
    row.prop(g, "shot")
    try:
        shot = host.convert.tag(g.shot or scene.name, "shot")
        col.label(text=f"Next version: {shot}/v{host.next_version_in_blender(scene, shot):03d}")
    except Exception as exc:  # a bad name: the Generate button reports it
        col.label(text=str(exc), icon="ERROR")
    col.operator("greenlight.generate", icon="RENDER_ANIMATION")
    if runtime.use_local_bridge():
        col.label(text=runtime.bridge_status(), icon="NETWORK_DRIVE")
    status = getattr(context.window_manager, "greenlight_status", "")
    if status:
        col.label(text=status)
    if g.jobs:
        col.separator()
        col.template_list("GREENLIGHT_UL_jobs", "", g, "jobs", g, "active_job", rows=3)
        if 0 <= g.active_job < len(g.jobs):
            rec = g.jobs[g.active_job]
            box = col.box()
            box.label(text=f"Job {rec.job_id} ({rec.backend}, seed {rec.seed}): {rec.state}")
            if rec.message:
                box.label(text=rec.message)
            kind = "measured" if rec.measured else "estimated"
            box.label(text=f"Energy {rec.energy_wh * 1000:.3f} mWh ({kind}), {rec.co2e_g:.4f} gCO2e")
            if rec.sci_unit:
                box.label(text=f"SCI {rec.sci:.4g} {rec.sci_unit}")
            if not rec.finished:
                box.progress(factor=rec.frames_done / max(rec.frame_count, 1),
                             text=f"{rec.frames_done}/{rec.frame_count}")
            row = box.row(align=True)
            row.operator("greenlight.cancel", icon="CANCEL")
            row.operator("greenlight.run_now", icon="PLAY")
            row.operator("greenlight.redownload", icon="IMPORT")


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


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
