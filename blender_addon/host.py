"""Everything that reads or changes Blender data: only ``*_in_blender``
functions (STYLE practice 5). They read raw values and hand them to the
engine-free ``convert``/``bridge.shot`` code, or apply results that the
worker thread produced. Call them on Blender's main thread only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from datetime import UTC
from pathlib import Path

import bpy
import numpy as np

from . import compat, convert
from ._deps import camera, errors, jobs, model, pose, rigs, validation
from .exr import read_exr
from .settings import ExtractSettings

log = logging.getLogger(__name__)

PASS_METHODS = {
    "camera": "blender-evaluated-camera",
    "depth": "cycles-1spp-depth-pass",
    "motion": "cycles-1spp-vector-pass",
    "pose": "rig-joints-projected",
}
IGNORE_PROP = "greenlight_ignore"        # on an armature object: not a character
MAPPING_PROP = "greenlight_coco_map"     # on an armature object: JSON keypoint -> bone


# ------------------------------------------------------------------ reading
def camera_object_in_blender(scene, name: str | None = None):
    if name:
        obj = scene.objects.get(name)
        if obj is None:
            raise errors.InvalidArgumentError(f"camera {name!r} is not in scene {scene.name!r}")
    else:
        obj = scene.camera
        if obj is None:
            raise errors.InvalidArgumentError(
                f"scene {scene.name!r} has no active camera: set one (Scene properties > Camera, "
                "or select a camera and press Ctrl+Numpad 0)")
    if obj.type != "CAMERA":
        raise errors.InvalidArgumentError(f"object {obj.name!r} is a {obj.type.lower()}, not a camera")
    return obj


def camera_sample_in_blender(scene, cam_obj, depsgraph):
    ev = cam_obj.evaluated_get(depsgraph)
    data = ev.data
    focus_point = None
    if data.dof.focus_object is not None:
        focus_point = np.array(data.dof.focus_object.evaluated_get(depsgraph).matrix_world.translation)
    matrix = np.array(ev.matrix_world, dtype=np.float64)
    return convert.camera_sample(
        cam_obj.name, matrix_world=matrix, cam_type=data.type, lens_mm=data.lens,
        sensor_width_mm=data.sensor_width, sensor_height_mm=data.sensor_height, sensor_fit=data.sensor_fit,
        clip_start_m=data.clip_start, clip_end_m=data.clip_end,
        focus_distance_m=convert.focus_distance_m(matrix, focus_point, data.dof.focus_distance),
        shift_x=data.shift_x, shift_y=data.shift_y,
        pixel_aspect=scene.render.pixel_aspect_x / scene.render.pixel_aspect_y)


def characters_in_blender(scene) -> list[tuple[object, object]]:
    """(armature object, ResolvedRig) for every armature that renders and is
    not marked ``greenlight_ignore``; raises RigMappingError for one that
    maps to nothing."""
    out = []
    for obj in sorted(scene.objects, key=lambda o: o.name):
        if obj.type != "ARMATURE" or obj.hide_render or obj.get(IGNORE_PROP):
            continue
        user = obj.get(MAPPING_PROP) or None
        try:
            rig = rigs.detect(obj.name, [b.name for b in obj.data.bones], user)
        except rigs.RigMappingError as exc:
            raise rigs.RigMappingError(
                f"{exc}. To skip this armature set its custom property {IGNORE_PROP} = 1; to map it set "
                f"{MAPPING_PROP} to JSON like {{\"neck\": \"Neck\", \"r_shoulder\": \"Shoulder.R\", ...}}") from None
        out.append((obj, rig))
    return out


def joints_in_blender(obj, rig, depsgraph) -> np.ndarray:
    """[18, 3] world positions of the rig's keypoints (NaN where unmapped)."""
    ev = obj.evaluated_get(depsgraph)
    world = np.array(ev.matrix_world, dtype=np.float64)
    pts = np.full((len(rig.joints), 3), np.nan)
    for i, ref in enumerate(rig.joints):
        if ref is None:
            continue
        pb = ev.pose.bones[ref.bone]
        local = pb.head if ref.end == "head" else pb.tail
        pts[i] = world[:3, :3] @ np.array(local) + world[:3, 3]
    return pts


def render_passes_in_blender(scene, view_layer_name: str, cam_obj, frames: list[int], width: int, height: int,
                             scratch: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Depth and forward motion per frame from a minimal Cycles render (1
    sample, pixel-centre filter, no denoising, no motion blur) of a
    temporary linked copy of ``scene``: the user's render settings are never
    touched and the copy is removed afterwards."""
    images_before = set(bpy.data.images.keys())
    context_scene = bpy.context.scene
    context_frame = (context_scene.frame_current, context_scene.frame_subframe)
    copy = scene.copy()
    try:
        copy.name = f"{scene.name} (greenlight passes)"
        copy.camera = cam_obj
        r = copy.render
        r.engine = "CYCLES"
        r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.use_border = False
        r.use_motion_blur = False        # the vector pass is all zeros with motion blur on
        r.use_compositing = False
        r.use_sequencer = False
        r.use_persistent_data = False    # persistent data zeroes the vector pass (checked, bpy 5.0.1)
        r.use_multiview = False
        c = copy.cycles
        c.samples = 1
        c.use_adaptive_sampling = False
        c.use_denoising = False          # denoising adds a "Noisy Image" part and time
        c.max_bounces = 0
        c.filter_width = 0.01            # sample pixel centres: passes are not blurred by the filter
        c.use_animated_seed = False
        for vl in copy.view_layers:
            vl.use = vl.name == view_layer_name
        vl = copy.view_layers[view_layer_name]
        for attr in dir(vl):
            if attr.startswith("use_pass_") and attr not in ("use_pass_z", "use_pass_vector"):
                try:
                    setattr(vl, attr, False)
                except (AttributeError, TypeError):
                    pass
        vl.use_pass_z = True
        vl.use_pass_vector = True
        settings = r.image_settings
        compat.set_multilayer_exr_in_blender(settings)
        settings.exr_codec = "NONE"                  # exr.read_exr reads raw scanlines
        settings.color_depth = "32"
        out = []
        for f in frames:
            # The copy shares the objects: the render reads their animated
            # state as the user's scene last evaluated it, so step both
            # (with the original left behind, every frame renders alike and
            # the vector pass is zero; checked, bpy 5.0.1). The motion is
            # evaluated around the context scene's frame: step it too when it
            # is another scene (else only its current frame gets true vectors;
            # checked, bpy 5.0.1).
            scene.frame_set(f)
            copy.frame_set(f)
            if context_scene != scene:
                context_scene.frame_set(f)
            path = scratch / f"passes_{f:06d}.exr"
            r.filepath = str(path)
            bpy.ops.render.render(write_still=True, scene=copy.name, layer=view_layer_name)
            ch = read_exr(path)
            path.unlink()
            prefix = f"{view_layer_name}."
            try:
                depth = convert.depth_from_pass(ch[prefix + "Depth.Z"])
                motion = convert.motion_from_pass(ch[prefix + "Vector.Z"], ch[prefix + "Vector.W"])
            except KeyError as exc:
                raise errors.GreenlightError(f"the pass render wrote no {exc} channel (got {sorted(ch)})") from None
            out.append((depth, motion))
        return out
    finally:
        bpy.data.scenes.remove(copy)
        if context_scene != scene:
            context_scene.frame_set(context_frame[0], subframe=context_frame[1])
        # Rendering creates the "Render Result" image when there was none.
        for name in set(bpy.data.images.keys()) - images_before:
            img = bpy.data.images[name]
            if img.type == "RENDER_RESULT":
                bpy.data.images.remove(img)


def zoomed_motion_in_blender(passes, cameras, width: int, height: int, scratch: Path):
    """``passes`` with each frame's motion made to include a focal-length
    change to the next frame (``cameras`` has one more than ``passes``) where
    this Blender's Vector pass leaves it out (4.2, see ``compat``)."""
    zooms = [camera.focal_length_px(b, width, height) / camera.focal_length_px(a, width, height)
             for a, b in zip(cameras[:-1], cameras[1:])]
    if all(abs(z - 1.0) < 1e-9 for z in zooms) or compat.vector_pass_follows_zoom_in_blender(
            render_passes_in_blender, scratch):
        return passes
    return [(depth, motion if abs(z - 1.0) < 1e-9 else convert.motion_with_zoom(motion, depth, z))
            for (depth, motion), z in zip(passes, zooms)]


def shot_from_scene_in_blender(scene, settings: ExtractSettings, view_layer_name: str | None = None):
    """Snapshot ``scene`` into a validated ``Shot`` (STYLE practice 3): all
    checks run before anything renders; the scene's current frame is restored
    and nothing else in the file changes."""
    t0 = time.perf_counter()
    cam_obj = camera_object_in_blender(scene, settings.camera)
    start, end = convert.frame_range(scene.frame_start, scene.frame_end, settings.frame_start, settings.frame_end)
    r = scene.render
    width, height = convert.pass_resolution(r.resolution_x, r.resolution_y, r.resolution_percentage,
                                            settings.resolution_scale, settings.width, settings.height)
    tags = model.Tags(convert.tag(settings.project, "project"),
                      convert.tag(settings.shot or scene.name, "shot"), settings.version)
    characters = characters_in_blender(scene) if settings.pose else []
    view_layer_name = view_layer_name or scene.view_layers[0].name
    frames = list(range(start, end + 1))
    original_frame, original_subframe = scene.frame_current, scene.frame_subframe
    cameras, joints = [], []
    try:
        for f in frames:
            scene.frame_set(f)
            depsgraph = bpy.context.evaluated_depsgraph_get() if bpy.context.scene == scene \
                else scene.view_layers[view_layer_name].depsgraph
            cameras.append(camera_sample_in_blender(scene, cam_obj, depsgraph))
            joints.append([joints_in_blender(obj, rig, depsgraph) for obj, rig in characters])
        next_camera = cameras[-1]   # the camera one frame past the range: the last frame's motion looks there
        if settings.motion:
            scene.frame_set(end + 1)
            depsgraph = bpy.context.evaluated_depsgraph_get() if bpy.context.scene == scene \
                else scene.view_layers[view_layer_name].depsgraph
            try:
                next_camera = camera_sample_in_blender(scene, cam_obj, depsgraph)
            except errors.GreenlightError:
                pass   # e.g. lens shift keyed after the range: no zoom to account for there
        t_sample = time.perf_counter()
        passes = [(None, None)] * len(frames)
        if settings.depth or settings.motion or characters:
            scratch = Path(settings.scratch_dir or tempfile.mkdtemp(prefix="greenlight-passes-"))
            scratch.mkdir(parents=True, exist_ok=True)
            try:
                passes = render_passes_in_blender(scene, view_layer_name, cam_obj, frames, width, height, scratch)
                if settings.motion:
                    passes = zoomed_motion_in_blender(passes, [*cameras, next_camera], width, height, scratch)
            finally:
                if not settings.keep_scratch and not settings.scratch_dir:
                    shutil.rmtree(scratch, ignore_errors=True)
    finally:
        scene.frame_set(original_frame, subframe=original_subframe)
    t_render = time.perf_counter()
    out = []
    for i, (cam, (depth, motion)) in enumerate(zip(cameras, passes)):
        poses = tuple(
            pose.pose_from_joints(obj.name, cam, width, height, np.nan_to_num(pts), present=np.array(rig.present),
                                  depth_m=depth)
            for (obj, rig), pts in zip(characters, joints[i]))
        out.append(model.Frame(index=i, camera=cam, depth_m=depth if settings.depth else None,
                               motion_px=motion if settings.motion else None, poses=poses))
    methods = {"camera": PASS_METHODS["camera"]}
    if settings.depth:
        methods["depth"] = PASS_METHODS["depth"]
    if settings.motion:
        methods["motion"] = PASS_METHODS["motion"]
    if characters:
        methods["pose"] = PASS_METHODS["pose"] + ":" + ",".join(sorted({rig.mapping for _, rig in characters}))
    blend = bpy.data.filepath
    shot = model.Shot(
        tags=tags, fps=convert.fps(r.fps, r.fps_base), width=width, height=height, frames=tuple(out),
        frame_start=start, depth_background="inf", pass_methods=methods,
        source=(f"blender {bpy.app.version_string}: {os.path.basename(blend) or 'unsaved'} / "
                f"{scene.name} / {cam_obj.name}"))
    validation.validate_shot(shot)
    log.info("extracted %s: %d frames %dx%d, sample %.2fs, passes %.2fs", tags.label, len(frames), width, height,
             t_sample - t0, t_render - t_sample)
    return shot


# ------------------------------------------------------------------ settings
def prefs_in_blender(context=None):
    """The add-on preferences as a BridgeSettings (defaults when the add-on
    is registered without being enabled, e.g. from a source checkout)."""
    from .props import ADDON_ID, default_cache_dir
    from .settings import BridgeSettings, with_local_bridge

    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    p = addon.preferences if addon is not None else None
    if p is None:
        return BridgeSettings(address=os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151"),
                              token=os.environ.get("GREENLIGHT_TOKEN", ""), cache_dir=default_cache_dir())
    settings = BridgeSettings(address=p.address, tls=p.use_tls, token=p.token,
                              cache_dir=bpy.path.abspath(p.cache_dir) if p.cache_dir else default_cache_dir())
    # the managed local bridge, when on, is where jobs, cancel and run-now go
    return with_local_bridge(settings, bool(getattr(p, "use_local_bridge", False)))


def next_version_in_blender(scene, shot: str) -> int:
    versions = [j.version for j in scene.greenlight.jobs if j.shot == shot]
    return max(versions, default=0) + 1


def settings_from_scene_in_blender(scene):
    """The panel's properties as (ExtractSettings, JobSettings)."""
    from datetime import datetime, timedelta

    from ._deps import request
    from .settings import JobSettings

    g = scene.greenlight
    shot = convert.tag(g.shot or scene.name, "shot")
    extract = ExtractSettings(
        frame_start=None if g.use_scene_range else g.frame_start,
        frame_end=None if g.use_scene_range else g.frame_end,
        resolution_scale=g.resolution_scale, project=g.project, shot=shot,
        version=next_version_in_blender(scene, shot))
    controls = tuple(request.ControlSettings(kind=k, enabled=s > 0, strength=s)
                     for k, s in (("depth", g.depth_strength), ("pose", g.pose_strength)))
    generation = request.GenerationSettings(backend=g.backend, prompt=g.prompt, negative_prompt=g.negative_prompt,
                                            seed=g.seed, steps=g.steps, controls=controls)
    if g.priority == "BATCH":
        scheduling = request.SchedulingSettings(
            job_class="batch", deadline=datetime.now(UTC) + timedelta(hours=g.deadline_hours))
    else:
        scheduling = request.SchedulingSettings()
    request.validate_generation(generation)
    return extract, JobSettings(generation=generation, scheduling=scheduling)


def shot_size_in_blender(scene, extract: ExtractSettings) -> tuple[int, int, int]:
    """(frame count, width, height) the shot would have, without sampling it."""
    start, end = convert.frame_range(scene.frame_start, scene.frame_end, extract.frame_start, extract.frame_end)
    r = scene.render
    width, height = convert.pass_resolution(r.resolution_x, r.resolution_y, r.resolution_percentage,
                                            extract.resolution_scale, extract.width, extract.height)
    return end - start + 1, width, height


def estimate_request_in_blender(scene, address: str):
    """The panel's settings as a ``panel_model.EstimateRequest`` for the bridge
    at ``address``; a GreenlightError when they cannot make a shot."""
    from . import panel_model

    extract, job = settings_from_scene_in_blender(scene)
    frames, width, height = shot_size_in_blender(scene, extract)
    g = scene.greenlight
    return panel_model.estimate_request(
        address, convert.tag(extract.project, "project"), frames, width, height, job.generation,
        job_class=job.scheduling.job_class, deadline_hours=g.deadline_hours,
        allowed_sites=job.scheduling.allowed_sites)


def bridge_address_in_blender(context=None) -> str:
    """Where jobs go now: the running local bridge when "Use a local bridge"
    is on, else the preferences' address (what the capabilities and estimate
    caches are keyed by). Reads preferences only: safe in ``draw``."""
    from . import local_bridge
    from .props import ADDON_ID

    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    p = addon.preferences if addon is not None else None
    if p is None:
        return os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151")
    lb = local_bridge.current()
    if getattr(p, "use_local_bridge", False) and lb is not None and lb.address:
        return lb.address
    return p.address


# ------------------------------------------------------------------ jobs and strips
def add_job_record_in_blender(scene, meta: dict):
    rec = scene.greenlight.jobs.add()
    for key, value in meta.items():
        setattr(rec, key, value)
    rec.name = meta["job_id"]
    scene.greenlight.active_job = len(scene.greenlight.jobs) - 1
    return rec


def job_record_in_blender(scene, job_id: str):
    return next((j for j in scene.greenlight.jobs if j.job_id == job_id), None)


def _channel_for_in_blender(se, label: str) -> int:
    for i, ch in enumerate(se.channels):
        if i > 0 and ch.name == label:
            return i
    used = {s.channel for s in compat.all_strips_in_blender(se)}
    for i in range(1, len(se.channels)):
        if i not in used and se.channels[i].name.startswith("Channel"):
            se.channels[i].name = label
            return i
    raise errors.GreenlightError("the Video Sequencer has no free channel for a new version")


def place_frames_in_blender(scene, rec):
    """Create or extend the image strip of job ``rec`` with the frames in its
    folder (contiguous from frame 0); returns the strip or None."""
    from ._deps import client_module

    frame_name = client_module().frame_name
    folder = Path(rec.folder)
    se = scene.sequence_editor or scene.sequence_editor_create()
    strip = compat.all_strips_in_blender(se).get(rec.label)
    have = len(strip.elements) if strip is not None else 0
    names = []
    i = have
    while (folder / frame_name(i)).exists():
        names.append(frame_name(i))
        i += 1
    if strip is None:
        if not names:
            return None
        channel = _channel_for_in_blender(se, rec.label)
        strip = compat.new_image_strip_in_blender(se, name=rec.label, filepath=str(folder / names[0]),
                                                  channel=channel, frame_start=rec.frame_start, fit_method="FIT")
        strip.directory = str(folder) + os.sep
        names = names[1:]
    for name in names:
        strip.elements.append(name)
    if names:
        strip.frame_final_duration = len(strip.elements)
    set_strip_properties_in_blender(strip, rec)
    return strip


def set_strip_properties_in_blender(strip, rec) -> None:
    strip["greenlight_job_id"] = rec.job_id
    strip["greenlight_backend"] = rec.backend
    strip["greenlight_seed"] = rec.seed
    strip["greenlight_energy_wh"] = rec.energy_wh
    strip["greenlight_co2e_g"] = rec.co2e_g
    strip["greenlight_sci"] = rec.sci
    strip["greenlight_sci_unit"] = rec.sci_unit
    strip["greenlight_energy_measured"] = rec.measured
    strip["greenlight_temporal_gap1"] = rec.temporal_gap1
    strip["greenlight_temporal_trajectory"] = rec.temporal_trajectory
    strip["greenlight_recipe"] = rec.recipe_hash


def apply_event_in_blender(scene, meta: dict, event) -> None:
    """Apply one worker ``JobEvent`` to ``scene`` (main thread)."""
    Kind, State = jobs.EventKind, jobs.JobState
    rec = job_record_in_blender(scene, event.job_id) if event.job_id else None
    if event.kind is Kind.ACCEPTED and event.status is not None:
        if rec is None:
            rec = add_job_record_in_blender(scene, dict(meta, job_id=event.job_id,
                                                        backend=event.status.backend or meta.get("backend", "")))
        rec.state = event.status.state.value
        rec.message = event.status.scheduling_reason
        return
    if rec is None:
        return  # an error before the bridge accepted: nothing in the file changes
    if event.kind is Kind.FRAME and event.frame is not None:
        rec.frames_done = max(rec.frames_done, event.frame.index + 1)
        rec.energy_wh += event.frame.energy_wh
        rec.co2e_g += event.frame.co2e_g_location
        rec.state = State.RUNNING.value
        place_frames_in_blender(scene, rec)
    elif event.kind is Kind.STATUS and event.status is not None:
        if event.status.frame_count:
            rec.frame_count = event.status.frame_count
        if event.status.state.active:
            rec.state = event.status.state.value
        if event.status.scheduling_reason:
            rec.message = event.status.scheduling_reason   # e.g. "waiting for a greener window until 03:30 ..."
    elif event.kind is Kind.COMPLETED and event.report is not None:
        report = event.report
        rec.state = State.COMPLETED.value
        rec.energy_wh = report.energy.energy_wh
        rec.co2e_g = report.energy.co2e_g_location
        rec.measured = report.energy.measured
        rec.sci = report.sci or 0.0
        rec.sci_unit = report.sci_unit
        t = report.temporal
        rec.temporal_gap1 = t.gap1 if t.computed and t.gap1 is not None else -1.0
        rec.temporal_trajectory = t.trajectory if t.computed and t.trajectory is not None else -1.0
        rec.recipe_hash = report.recipe_hash
        rec.message = f"{report.frames} frames"
        strip = place_frames_in_blender(scene, rec)
        if strip is not None:
            set_strip_properties_in_blender(strip, rec)
    elif event.kind in (Kind.FAILED, Kind.CANCELLED, Kind.ERROR):
        state = event.kind.state
        rec.state = state.value if state is not None else State.DETACHED.value
        rec.message = event.message
