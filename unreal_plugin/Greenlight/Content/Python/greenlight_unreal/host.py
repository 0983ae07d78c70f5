"""The only module that calls ``unreal`` (STYLE practice 5): every public
function ends in ``_in_unreal`` and runs on the game thread.

It reads plain numbers out of the editor (``shot_builder`` types) and
applies results; conversions and decisions live in the engine-free modules.
API names target UE 5.4+ (``get_tracks``/``add_track``, not the removed
"master track" names). Tests run this module against
``tests/fakes/unreal.py``, a recording fake: that checks wiring, not what
Unreal does; docs/unreal.md lists what to verify in the real editor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import unreal

from bridge.shot.coords import Rotator, UnrealTransform

from .mrq_exr import DEPTH_MATERIAL, MOTION_MATERIAL
from .settings import PrevizSettings
from .shot_builder import CameraState, CharacterState, SequenceSample

MENU_OWNER = "Greenlight"
MAIN_MENU = "LevelEditor.MainMenu"
SEQUENCER_TOOLBAR = "Sequencer.MainToolBar"
META_PREFIX = "Greenlight."
COMMANDS = (
    ("GenerateShot", "Generate previz", "Render passes for the open Level Sequence, generate previz frames "
     "and bring them back as a media track", "import greenlight_unreal.previz as g; g.start_from_menu()"),
    ("CancelShot", "Cancel previz", "Cancel the running Greenlight previz job",
     "import greenlight_unreal.previz as g; g.cancel_from_menu()"),
)


# ------------------------------------------------------------------ editor plumbing
def register_tick_in_unreal(callback: Callable[[float], None]):
    return unreal.register_slate_post_tick_callback(callback)


def unregister_tick_in_unreal(handle) -> None:
    unreal.unregister_slate_post_tick_callback(handle)


def log_in_unreal(message: str, level: str = "info") -> None:
    {"warning": unreal.log_warning, "error": unreal.log_error}.get(level, unreal.log)(f"Greenlight: {message}")


def show_message_in_unreal(title: str, message: str) -> None:
    unreal.EditorDialog.show_message(title, message, unreal.AppMsgType.OK)


def quit_editor_in_unreal() -> None:
    unreal.SystemLibrary.quit_editor()


def saved_dir_in_unreal() -> Path:
    return Path(unreal.Paths.convert_relative_path_to_full(unreal.Paths.project_saved_dir()))


def register_menus_in_unreal() -> list[str]:
    """A "Greenlight" menu in the Level Editor's main menu and buttons on the
    Sequencer toolbar; returns the menu names touched."""
    menus = unreal.ToolMenus.get()
    main = menus.find_menu(MAIN_MENU)
    touched = []
    if main is not None:
        sub = main.add_sub_menu(MENU_OWNER, "", "Greenlight", "Greenlight", "Carbon-aware AI previz")
        for name, label, tip, command in COMMANDS:
            sub.add_menu_entry("Previz", _entry(name, label, tip, command, unreal.MultiBlockType.MENU_ENTRY))
        touched.append(f"{MAIN_MENU}.Greenlight")
    toolbar = menus.find_menu(SEQUENCER_TOOLBAR)
    if toolbar is not None:
        name, label, tip, command = COMMANDS[0]
        toolbar.add_menu_entry("Greenlight", _entry(name, label, tip, command, unreal.MultiBlockType.TOOL_BAR_BUTTON))
        touched.append(SEQUENCER_TOOLBAR)
    menus.refresh_all_widgets()
    return touched


def _entry(name, label, tip, command, block_type):
    entry = unreal.ToolMenuEntry(name=f"Greenlight.{name}", type=block_type)
    entry.set_label(label)
    entry.set_tool_tip(tip)
    entry.set_string_command(unreal.ToolMenuStringCommandType.PYTHON, "", command)
    return entry


# ------------------------------------------------------------------ progress
def begin_progress_in_unreal(total: float, label: str):
    """A cancellable progress dialog (``ScopedSlowTask``) kept open across
    calls; close it with ``end_progress_in_unreal``."""
    task = unreal.ScopedSlowTask(total, label)
    task.__enter__()
    task.make_dialog(True)
    return task


def step_progress_in_unreal(task, amount: float, label: str) -> bool:
    """Advance; returns True when the user pressed Cancel."""
    task.enter_progress_frame(amount, label)
    return bool(task.should_cancel())


def end_progress_in_unreal(task) -> None:
    task.__exit__(None, None, None)


# ------------------------------------------------------------------ reading the sequence
def current_sequence_in_unreal():
    seq = unreal.LevelSequenceEditorBlueprintLibrary.get_current_level_sequence()
    if seq is None:
        raise LookupError("no Level Sequence is open in Sequencer: open the shot's sequence first")
    return seq


def load_sequence_in_unreal(path: str):
    seq = unreal.load_asset(path)
    if seq is None or not isinstance(seq, unreal.LevelSequence):
        raise LookupError(f"{path!r} is not a Level Sequence asset")
    unreal.LevelSequenceEditorBlueprintLibrary.open_level_sequence(seq)
    return seq


def _frame_number(value) -> int:
    return int(getattr(value, "value", value))


def _camera_cuts_in_unreal(seq) -> list[tuple[int, int, object]]:
    """(start, end, CineCameraActor) per camera cut section, display-rate frames."""
    cuts = []
    for track in seq.find_tracks_by_exact_type(unreal.MovieSceneCameraCutTrack):
        for section in track.get_sections():
            if not section.is_active():
                continue
            bound = unreal.LevelSequenceEditorBlueprintLibrary.get_bound_objects(section.get_camera_binding_id())
            cameras = [o for o in bound if isinstance(o, unreal.CineCameraActor)]
            if not cameras:
                raise LookupError(f"camera cut at frame {section.get_start_frame()} is not bound to a CineCameraActor")
            cuts.append((section.get_start_frame(), section.get_end_frame(), cameras[0]))
    if not cuts:
        raise LookupError(f"{seq.get_name()} has no camera cut track: add one bound to a CineCameraActor")
    return sorted(cuts, key=lambda c: c[0])


def _skeletal_components_in_unreal(seq, characters: tuple[str, ...]) -> dict[str, object]:
    """Actor label -> SkeletalMeshComponent for actors bound in the sequence."""
    out = {}
    for binding in seq.get_bindings():
        binding_id = seq.make_binding_id(binding, unreal.MovieSceneObjectBindingSpace.LOCAL)
        for obj in unreal.LevelSequenceEditorBlueprintLibrary.get_bound_objects(binding_id):
            if not isinstance(obj, unreal.Actor):
                continue
            label = obj.get_actor_label()
            if characters and label not in characters:
                continue
            comp = obj.get_component_by_class(unreal.SkeletalMeshComponent)
            if comp is not None:
                out[label] = comp
    return out


def _bone_names_in_unreal(component) -> tuple[str, ...]:
    return tuple(str(component.get_bone_name(i)) for i in range(component.get_num_bones()))


def _transform(t) -> UnrealTransform:
    loc, rot, scale = t.translation, t.rotation.rotator(), t.scale3d
    return UnrealTransform((loc.x, loc.y, loc.z), Rotator(rot.pitch, rot.yaw, rot.roll), (scale.x, scale.y, scale.z))


def read_sequence_in_unreal(seq, settings: PrevizSettings, bones_needed: tuple[str, ...] = (),
                            on_frame: Callable[[int, int], bool] | None = None) -> SequenceSample:
    """Evaluate the sequence frame by frame (Sequencer applies parenting,
    rigs and attachments; no raw keys are read) and return plain samples.
    ``on_frame(i, n)`` returning True cancels (raises ``InterruptedError``)."""
    lib = unreal.LevelSequenceEditorBlueprintLibrary
    rate = seq.get_display_rate()
    start, end = seq.get_playback_start(), seq.get_playback_end()
    cuts = _camera_cuts_in_unreal(seq)
    skeletal = _skeletal_components_in_unreal(seq, settings.characters) if "pose" in settings.passes else {}
    skeleton_bones = {label: _bone_names_in_unreal(c) for label, c in skeletal.items()}
    cameras, characters = [], []
    n = end - start
    try:
        for i, frame in enumerate(range(start, end)):
            lib.set_current_time(frame)        # evaluates the sequence at this display-rate frame
            actor = next((cam for s, e, cam in cuts if s <= frame < e), None)
            if actor is None:
                raise LookupError(f"frame {frame} is outside every camera cut section")
            comp = actor.get_cine_camera_component()
            t = comp.get_world_transform()
            filmback = comp.filmback
            loc, rot = t.translation, t.rotation.rotator()
            cameras.append(CameraState(
                actor=actor.get_actor_label(), location_cm=(loc.x, loc.y, loc.z),
                rotation=(rot.pitch, rot.yaw, rot.roll), focal_length_mm=comp.current_focal_length,
                sensor_width_mm=filmback.sensor_width, sensor_height_mm=filmback.sensor_height,
                focus_distance_cm=comp.current_focus_distance))
            states = []
            for label, sk in skeletal.items():
                wanted = bones_needed or skeleton_bones[label]
                bones = {b: _transform(sk.get_socket_transform(b, unreal.RelativeTransformSpace.RTS_WORLD))
                         for b in wanted if b in skeleton_bones[label]}
                states.append(CharacterState(label, bones))
            characters.append(tuple(states))
            if on_frame is not None and on_frame(i, n):
                raise InterruptedError("cancelled while reading the sequence")
    finally:
        lib.set_current_time(start)
    return SequenceSample(
        name=seq.get_name(), path=seq.get_path_name(), display_rate=(rate.numerator, rate.denominator),
        start_frame=start, end_frame=end, cameras=tuple(cameras), characters=tuple(characters),
        skeleton_bones=skeleton_bones)


# ------------------------------------------------------------------ Movie Render Queue
def render_passes_in_unreal(seq, folder: Path, settings: PrevizSettings, on_finished: Callable[[bool], None]):
    """Queue one MRQ job (Deferred Rendering + World Depth + Motion Vectors,
    32-bit, multilayer EXR into ``folder``) and render it in-editor (PIE
    executor). ``on_finished(success)`` runs on the game thread."""
    subsystem = unreal.get_editor_subsystem(unreal.MoviePipelineQueueSubsystem)
    queue = subsystem.get_queue()
    for old in [j for j in queue.get_jobs() if j.job_name.startswith("Greenlight_")]:
        queue.delete_job(old)
    job = queue.allocate_new_job(unreal.MoviePipelineExecutorJob)
    job.job_name = f"Greenlight_{seq.get_name()}"
    job.sequence = unreal.SoftObjectPath(seq.get_path_name())
    world = unreal.get_editor_subsystem(unreal.UnrealEditorSubsystem).get_editor_world()
    job.map = unreal.SoftObjectPath(world.get_path_name())
    config = job.get_configuration()

    output = config.find_or_add_setting_by_class(unreal.MoviePipelineOutputSetting)
    output.output_directory = unreal.DirectoryPath(str(folder))
    output.file_name_format = "{sequence_name}.{frame_number}"
    output.zero_pad_frame_numbers = 4
    output.output_resolution = unreal.IntPoint(settings.width, settings.height)
    output.override_existing_output = True

    deferred = config.find_or_add_setting_by_class(unreal.MoviePipelineDeferredPassBase)
    deferred.disable_multisample_effects = True       # passes must line up pixel for pixel
    materials = []
    wanted = [DEPTH_MATERIAL] * ("depth" in settings.passes or "pose" in settings.passes) \
        + [MOTION_MATERIAL] * ("motion" in settings.passes)
    for path in wanted:
        p = unreal.MoviePipelinePostProcessPass()
        p.enabled = True
        p.material = unreal.load_asset(path)
        p.high_precision_output = True                # 32-bit float channels
        materials.append(p)
    deferred.additional_post_process_materials = materials

    exr = config.find_or_add_setting_by_class(unreal.MoviePipelineImageSequenceOutput_EXR)
    exr.multilayer = True
    exr.compression = unreal.EXRCompressionFormat.ZIP   # lossless
    aa = config.find_or_add_setting_by_class(unreal.MoviePipelineAntiAliasingSetting)
    aa.spatial_sample_count = 1
    aa.temporal_sample_count = 1
    aa.override_anti_aliasing = True
    aa.anti_aliasing_method = unreal.AntiAliasingMethod.AAM_NONE

    executor = subsystem.render_queue_with_executor(unreal.MoviePipelinePIEExecutor)

    def finished(executor_, success):
        on_finished(bool(success))

    executor.on_executor_finished_delegate.add_callable_unique(finished)
    return executor


def cancel_render_in_unreal(executor) -> None:
    executor.cancel_all_jobs()


# ------------------------------------------------------------------ frames back
def next_version_in_unreal(content_path: str, shot: str) -> int:
    existing = unreal.EditorAssetLibrary.list_assets(content_path, recursive=False) \
        if unreal.EditorAssetLibrary.does_directory_exist(content_path) else []
    prefix = f"{shot}_v"
    versions = [int(n[len(prefix):len(prefix) + 3]) for n in (Path(str(p)).name.split(".")[0] for p in existing)
                if n.startswith(prefix) and n[len(prefix):len(prefix) + 3].isdigit()]
    return max(versions, default=0) + 1


def import_frames_in_unreal(seq, folder: Path, shot: str, version: int, start_frame: int, end_frame: int,
                            display_rate: tuple[int, int], metadata: dict[str, str], content_path: str) -> dict:
    """An ImgMediaSource on the frame folder and a root media track spanning
    the shot's range, one per version, tagged with ``metadata`` (job id,
    energy, carbon) as asset metadata. Returns what was created."""
    name = f"{shot}_v{version:03d}"
    tools = unreal.AssetToolsHelpers.get_asset_tools()
    source = tools.create_asset(name, content_path, unreal.ImgMediaSource, None)
    if source is None:
        raise RuntimeError(f"could not create {content_path}/{name} (does it already exist?)")
    source.set_sequence_path(str(folder))
    source.set_editor_property("frame_rate_override", unreal.FrameRate(*display_rate))
    for key, value in metadata.items():
        unreal.EditorAssetLibrary.set_metadata_tag(source, f"{META_PREFIX}{key}", str(value))
    unreal.EditorAssetLibrary.save_loaded_asset(source)

    track = seq.add_track(unreal.MovieSceneMediaTrack)
    track.set_display_name(f"Greenlight {shot} v{version:03d}")
    section = track.add_section()
    section.set_range(start_frame, end_frame)
    section.set_editor_property("media_source", source)
    unreal.LevelSequenceEditorBlueprintLibrary.refresh_current_level_sequence()
    return {"asset": f"{content_path}/{name}", "track": track.get_display_name(), "range": (start_frame, end_frame)}


def save_asset_in_unreal(asset) -> bool:
    return bool(unreal.EditorAssetLibrary.save_loaded_asset(asset))


def ensure_folder_in_unreal(path: Path) -> Path:
    os.makedirs(path, exist_ok=True)
    return path
