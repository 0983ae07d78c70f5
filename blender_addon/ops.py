"""Operators: Generate, Cancel, Re-download, Block Shots from Script. Each snapshots properties into
typed settings, calls host/runtime, and reports only GreenlightError to the
user (STYLE practice 12); anything else keeps its traceback."""

from __future__ import annotations

import logging
import os

import bpy

from . import host, panel_model, runtime
from ._deps import errors, jobs

log = logging.getLogger(__name__)


class GREENLIGHT_OT_generate(bpy.types.Operator):
    """Sample the shot (camera, depth, motion, pose) and send it to the Greenlight bridge"""

    bl_idname = "greenlight.generate"
    bl_label = "Generate Previz"
    bl_options = {"REGISTER"}

    def execute(self, context):
        scene = context.scene
        try:
            bridge = host.prefs_in_blender(context)
            from .settings import check_online_access
            check_online_access(bridge.address, bpy.app.online_access)
            extract, job = host.settings_from_scene_in_blender(scene)
            # an unavailable backend is refused here, with the bridge's reason, before the pass render
            panel_model.check_backend(panel_model.FETCHER.capabilities_for(bridge.address), job.generation.backend)
            shot = host.shot_from_scene_in_blender(scene, extract, context.view_layer.name)
            runtime.start_job(scene, shot, job, bridge)
        except errors.GreenlightError as exc:
            log.info("generate refused", exc_info=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Greenlight: sending {shot.tags.label} ({shot.frame_count} frames, "
                              f"{shot.width}x{shot.height}) to {bridge.address}")
        return {"FINISHED"}


class GREENLIGHT_OT_refresh(bpy.types.Operator):
    """Ask the bridge for its backends (and the cost of this shot) again"""

    bl_idname = "greenlight.refresh"
    bl_label = "Refresh"

    def execute(self, context):
        try:
            runtime.refresh_capabilities(context=context)
        except errors.GreenlightError as exc:
            self.report({"ERROR"}, str(exc).splitlines()[0])
            return {"CANCELLED"}
        try:
            runtime.request_estimate(context.scene, context)
        except errors.GreenlightError as exc:  # the backends still refresh; the cost line says why it has none
            log.info("estimate not requested: %s", exc)
        self.report({"INFO"}, f"Greenlight: asking {host.bridge_address_in_blender(context)} for its backends")
        return {"FINISHED"}


class GREENLIGHT_OT_estimate(bpy.types.Operator):
    """Ask the bridge what this shot would cost with these settings: wall time, Wh and gCO2e (an estimate),
    and for a batch job where and when it would run"""

    bl_idname = "greenlight.estimate"
    bl_label = "Estimate"

    def execute(self, context):
        try:
            runtime.request_estimate(context.scene, context)
        except errors.GreenlightError as exc:
            self.report({"ERROR"}, str(exc).splitlines()[0])
            return {"CANCELLED"}
        self.report({"INFO"}, f"Greenlight: asking {host.bridge_address_in_blender(context)} for an estimate")
        return {"FINISHED"}


def _active_record(context):
    g = context.scene.greenlight
    if 0 <= g.active_job < len(g.jobs):
        return g.jobs[g.active_job]
    return None


class GREENLIGHT_OT_cancel(bpy.types.Operator):
    """Cancel the selected Greenlight job"""

    bl_idname = "greenlight.cancel"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        rec = _active_record(context)
        return rec is not None and not rec.finished

    def execute(self, context):
        rec = _active_record(context)
        worker = runtime.worker_for(rec.job_id)
        if worker is not None:
            worker.cancel()
        else:
            import threading

            from .jobs import cancel_job
            bridge = host.prefs_in_blender(context)
            threading.Thread(target=cancel_job, args=(bridge, rec.job_id, runtime.UPDATES), daemon=True).start()
        self.report({"INFO"}, f"Greenlight: cancelling job {rec.job_id}")
        return {"FINISHED"}


class GREENLIGHT_OT_run_now(bpy.types.Operator):
    """Start the selected job now instead of waiting for a greener window"""

    bl_idname = "greenlight.run_now"
    bl_label = "Run Now"

    @classmethod
    def poll(cls, context):
        rec = _active_record(context)
        return rec is not None and rec.state == jobs.JobState.SCHEDULED.value

    def execute(self, context):
        import threading

        from .jobs import run_job_now

        rec = _active_record(context)
        bridge = host.prefs_in_blender(context)
        threading.Thread(target=run_job_now, args=(bridge, rec.job_id, runtime.UPDATES), daemon=True).start()
        self.report({"INFO"}, f"Greenlight: starting job {rec.job_id} now")
        return {"FINISHED"}


class GREENLIGHT_OT_redownload(bpy.types.Operator):
    """Watch the selected job again and fetch any frames missing from its folder"""

    bl_idname = "greenlight.redownload"
    bl_label = "Re-download"

    @classmethod
    def poll(cls, context):
        rec = _active_record(context)
        return rec is not None and runtime.worker_for(rec.job_id) is None

    def execute(self, context):
        rec = _active_record(context)
        try:
            runtime.attach_job(context.scene, rec, host.prefs_in_blender(context))
        except errors.GreenlightError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class GREENLIGHT_OT_block_script(bpy.types.Operator):
    """Read a screenplay (.fountain or .fdx), plan its shots and add one blocked scene per screenplay scene:
    a placeholder set, posed figures, and per shot an animated camera bound to a marker"""

    bl_idname = "greenlight.block_script"
    bl_label = "Block Shots from Script"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Script", subtype="FILE_PATH",
                                       description="Fountain (.fountain) or Final Draft (.fdx) screenplay")
    filter_glob: bpy.props.StringProperty(default="*.fountain;*.fdx", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from . import storyboard_scene

        r = context.scene.render
        path = bpy.path.abspath(self.filepath)
        try:
            if not path or not os.path.isfile(path):
                raise errors.InvalidArgumentError(f"{self.filepath or 'no file'}: choose a .fountain or .fdx script",
                                                  field="filepath")
            # the blocking is framed for this scene's frame size and rate
            scenes = storyboard_scene.block_script_in_blender(path, fps=r.fps / r.fps_base, width=r.resolution_x,
                                                              height=r.resolution_y)
        except errors.GreenlightError as exc:   # a malformed script names its line
            log.info("block shots from script refused", exc_info=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.window is not None:
            context.window.scene = scenes[0]
        shots = sum(len(sc.timeline_markers) for sc in scenes)
        self.report({"INFO"}, f"Greenlight: added {len(scenes)} scenes ({shots} shots) from {os.path.basename(path)}")
        return {"FINISHED"}


CLASSES = (GREENLIGHT_OT_generate, GREENLIGHT_OT_refresh, GREENLIGHT_OT_estimate, GREENLIGHT_OT_cancel,
           GREENLIGHT_OT_run_now, GREENLIGHT_OT_redownload, GREENLIGHT_OT_block_script)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
