"""A RECORDING FAKE of Unreal's ``unreal`` Python module, for tests only.

It implements only the calls the Greenlight plugin makes (see
``unreal_plugin/.../greenlight_unreal/host.py``), records every call in
``CALLS`` as ``(name, args)`` and keeps just enough state to answer the next
call consistently (a "scene" of per-frame camera and bone transforms, an
asset registry, tracks added to a sequence). It does not render, evaluate
Sequencer, or check what Unreal would accept: a test against it shows the
plugin's WIRING (menus registered, media source path set, track range,
metadata tags), never engine behaviour. The checklist in docs/unreal.md
covers what only the real editor can verify.

Tests drive time with ``tick()`` (the Slate post-tick callbacks) and give
``MoviePipelineQueueSubsystem`` a ``render_hook(job) -> bool`` that writes
the files a render would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

CALLS: list[tuple[str, tuple]] = []
STATE = SimpleNamespace()
THREADS: set[str] = set()     # names of the threads that called into the fake


def _record(name: str, *args) -> None:
    CALLS.append((name, args))
    THREADS.add(threading.current_thread().name)


def calls(name: str) -> list[tuple]:
    return [args for n, args in CALLS if n == name]


def reset() -> None:
    CALLS.clear()
    THREADS.clear()
    STATE.tick_callbacks = {}
    STATE.next_handle = 1
    STATE.current_sequence = None
    STATE.current_frame = 0
    STATE.assets = {}
    STATE.metadata = {}
    STATE.menus = {"LevelEditor.MainMenu": ToolMenu("LevelEditor.MainMenu"),
                   "Sequencer.MainToolBar": ToolMenu("Sequencer.MainToolBar")}
    STATE.queue = MoviePipelineQueue()
    STATE.render_hook = None
    STATE.quit = False
    STATE.dialogs = []
    STATE.logs = []
    STATE.saved_dir = "/tmp/unreal-fake/Saved"


# ------------------------------------------------------------------ logging / editor
def log(msg):
    STATE.logs.append(("info", msg))


def log_warning(msg):
    STATE.logs.append(("warning", msg))


def log_error(msg):
    STATE.logs.append(("error", msg))


class AppMsgType:
    OK = "OK"


class EditorDialog:
    @staticmethod
    def show_message(title, message, kind):
        _record("EditorDialog.show_message", title, message)
        STATE.dialogs.append((title, message))


class SystemLibrary:
    @staticmethod
    def quit_editor():
        _record("SystemLibrary.quit_editor")
        STATE.quit = True


class Paths:
    @staticmethod
    def project_saved_dir():
        return STATE.saved_dir

    @staticmethod
    def convert_relative_path_to_full(path):
        return path


def register_slate_post_tick_callback(callback):
    handle = STATE.next_handle
    STATE.next_handle += 1
    STATE.tick_callbacks[handle] = callback
    _record("register_slate_post_tick_callback", handle)
    return handle


def unregister_slate_post_tick_callback(handle):
    _record("unregister_slate_post_tick_callback", handle)
    STATE.tick_callbacks.pop(handle, None)


def tick(delta_s: float = 1 / 60) -> None:
    """Test helper: one editor frame (Slate post-tick callbacks + pending executor events)."""
    for cb in list(STATE.tick_callbacks.values()):
        cb(delta_s)
    for executor in list(getattr(STATE, "executors", [])):
        executor._tick()


# ------------------------------------------------------------------ math structs
@dataclass
class Vector:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Rotator:
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass
class Quat:
    """Holds the rotator it was made from (the fake needs no quaternion maths)."""

    _rotator: Rotator

    def rotator(self):
        return self._rotator


@dataclass
class Transform:
    translation: Vector
    rotation: Quat
    scale3d: Vector = field(default_factory=lambda: Vector(1.0, 1.0, 1.0))


def make_transform(location, rotation=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0)) -> Transform:
    return Transform(Vector(*location), Quat(Rotator(*rotation)), Vector(*scale))


@dataclass
class FrameRate:
    numerator: int = 24
    denominator: int = 1


@dataclass
class IntPoint:
    x: int = 0
    y: int = 0


@dataclass
class DirectoryPath:
    path: str = ""


@dataclass
class SoftObjectPath:
    path: str = ""


class _Props:
    def set_editor_property(self, name, value):
        _record(f"{type(self).__name__}.set_editor_property", name, value)
        setattr(self, name, value)

    def get_editor_property(self, name):
        return getattr(self, name)


# ------------------------------------------------------------------ actors and components
class Object(_Props):
    def __init__(self, name="Object", path=None):
        self._name = name
        self._path = path or f"/Game/{name}.{name}"

    def get_name(self):
        return self._name

    def get_path_name(self):
        return self._path


class Actor(Object):
    def __init__(self, label):
        super().__init__(label, f"/Game/Maps/Main.Main:PersistentLevel.{label}")
        self._label = label
        self._components = []

    def get_actor_label(self):
        return self._label

    def get_component_by_class(self, cls):
        return next((c for c in self._components if isinstance(c, cls)), None)


@dataclass
class Filmback:
    sensor_width: float = 36.0
    sensor_height: float = 24.0


class CineCameraComponent(Object):
    """``pose(frame) -> (location_cm, (pitch, yaw, roll))`` is the evaluated world pose."""

    def __init__(self, pose: Callable[[int], tuple], focal_length=35.0, filmback=None, focus_distance=0.0):
        super().__init__("CineCameraComponent")
        self._pose = pose
        self.current_focal_length = focal_length
        self.filmback = filmback or Filmback()
        self.current_focus_distance = focus_distance

    def get_world_transform(self):
        _record("CineCameraComponent.get_world_transform", STATE.current_frame)
        loc, rot = self._pose(STATE.current_frame)
        return make_transform(loc, rot)


class CineCameraActor(Actor):
    def __init__(self, label, component: CineCameraComponent):
        super().__init__(label)
        self._camera = component
        self._components.append(component)

    def get_cine_camera_component(self):
        return self._camera


class SkeletalMeshComponent(Object):
    """``bones(frame) -> {bone: (location_cm, rotation, scale)}`` world transforms."""

    def __init__(self, bone_names, bones: Callable[[int], dict]):
        super().__init__("SkeletalMeshComponent")
        self._bone_names = list(bone_names)
        self._bones = bones

    def get_num_bones(self):
        return len(self._bone_names)

    def get_bone_name(self, index):
        return self._bone_names[index]

    def get_socket_transform(self, name, space):
        _record("SkeletalMeshComponent.get_socket_transform", name, space)
        return make_transform(*self._bones(STATE.current_frame)[name])


class SkeletalMeshActor(Actor):
    def __init__(self, label, component: SkeletalMeshComponent):
        super().__init__(label)
        self._components.append(component)


class RelativeTransformSpace:
    RTS_WORLD = "RTS_WORLD"


class MovieSceneObjectBindingSpace:
    LOCAL = "LOCAL"


# ------------------------------------------------------------------ sequences
@dataclass
class MovieSceneObjectBindingID:
    guid: str


class MovieSceneBindingProxy:
    def __init__(self, guid, objects):
        self._guid = guid
        self._objects = objects

    def get_id(self):
        return self._guid


class MovieSceneSection(_Props):
    def __init__(self):
        self.range = None
        self.media_source = None

    def set_range(self, start, end):
        _record(f"{type(self).__name__}.set_range", start, end)
        self.range = (start, end)

    def is_active(self):
        return True


class MovieSceneCameraCutSection(MovieSceneSection):
    def __init__(self, start, end, binding_guid):
        super().__init__()
        self.range = (start, end)
        self._binding = MovieSceneObjectBindingID(binding_guid)

    def get_start_frame(self):
        return self.range[0]

    def get_end_frame(self):
        return self.range[1]

    def get_camera_binding_id(self):
        return self._binding


class MovieSceneMediaSection(MovieSceneSection):
    pass


class MovieSceneTrack(_Props):
    section_class = MovieSceneSection

    def __init__(self, sections=()):
        self._sections = list(sections)
        self._display_name = ""

    def get_sections(self):
        return list(self._sections)

    def add_section(self):
        section = self.section_class()
        _record(f"{type(self).__name__}.add_section")
        self._sections.append(section)
        return section

    def set_display_name(self, name):
        _record(f"{type(self).__name__}.set_display_name", name)
        self._display_name = name

    def get_display_name(self):
        return self._display_name


class MovieSceneCameraCutTrack(MovieSceneTrack):
    section_class = MovieSceneCameraCutSection


class MovieSceneMediaTrack(MovieSceneTrack):
    section_class = MovieSceneMediaSection


class LevelSequence(Object):
    def __init__(self, name, display_rate=FrameRate(24, 1), start=0, end=10):
        super().__init__(name, f"/Game/Shots/{name}.{name}")
        self._rate = display_rate
        self._start, self._end = start, end
        self._tracks = []
        self._bindings = []

    def get_display_rate(self):
        return self._rate

    def get_playback_start(self):
        return self._start

    def get_playback_end(self):
        return self._end

    def get_tracks(self):
        return list(self._tracks)

    def find_tracks_by_exact_type(self, cls):
        return [t for t in self._tracks if type(t) is cls]

    def add_track(self, cls):
        _record("LevelSequence.add_track", cls.__name__)
        track = cls()
        self._tracks.append(track)
        return track

    def get_bindings(self):
        return list(self._bindings)

    def make_binding_id(self, binding, space):
        return MovieSceneObjectBindingID(binding.get_id())

    # test helpers (not Unreal API)
    def bind(self, guid, *objects):
        self._bindings.append(MovieSceneBindingProxy(guid, list(objects)))

    def add_camera_cut(self, start, end, guid):
        track = next(iter(self.find_tracks_by_exact_type(MovieSceneCameraCutTrack)), None)
        if track is None:
            track = MovieSceneCameraCutTrack()
            self._tracks.append(track)
        track._sections.append(MovieSceneCameraCutSection(start, end, guid))


class LevelSequenceEditorBlueprintLibrary:
    @staticmethod
    def get_current_level_sequence():
        return STATE.current_sequence

    @staticmethod
    def open_level_sequence(seq):
        _record("LevelSequenceEditorBlueprintLibrary.open_level_sequence", seq.get_path_name())
        STATE.current_sequence = seq
        return True

    @staticmethod
    def set_current_time(frame):
        _record("LevelSequenceEditorBlueprintLibrary.set_current_time", frame)
        STATE.current_frame = frame

    @staticmethod
    def get_bound_objects(binding_id):
        seq = STATE.current_sequence
        for b in seq.get_bindings():
            if b.get_id() == binding_id.guid:
                return list(b._objects)
        return []

    @staticmethod
    def refresh_current_level_sequence():
        _record("LevelSequenceEditorBlueprintLibrary.refresh_current_level_sequence")


# ------------------------------------------------------------------ assets
def load_asset(path):
    _record("load_asset", path)
    return STATE.assets.get(path.split(".")[0], Object(path.rsplit("/", 1)[-1].split(".")[0], path))


class ImgMediaSource(Object):
    def __init__(self, name, path):
        super().__init__(name, path)
        self.sequence_path = None
        self.frame_rate_override = None

    def set_sequence_path(self, path):
        _record("ImgMediaSource.set_sequence_path", path)
        self.sequence_path = path


class _AssetTools:
    def create_asset(self, name, package_path, cls, factory):
        _record("AssetTools.create_asset", name, package_path, cls.__name__)
        path = f"{package_path}/{name}"
        if path in STATE.assets:
            return None
        asset = cls(name, f"{path}.{name}")
        STATE.assets[path] = asset
        return asset


class AssetToolsHelpers:
    @staticmethod
    def get_asset_tools():
        return _AssetTools()


class EditorAssetLibrary:
    @staticmethod
    def set_metadata_tag(obj, tag, value):
        _record("EditorAssetLibrary.set_metadata_tag", obj.get_path_name(), tag, value)
        STATE.metadata.setdefault(obj.get_path_name(), {})[tag] = value

    @staticmethod
    def save_loaded_asset(obj):
        _record("EditorAssetLibrary.save_loaded_asset", obj.get_path_name())
        return True

    @staticmethod
    def does_directory_exist(path):
        return any(p.startswith(path + "/") for p in STATE.assets)

    @staticmethod
    def list_assets(path, recursive=False):
        return [f"{p}.{p.rsplit('/', 1)[-1]}" for p in STATE.assets if p.rsplit("/", 1)[0] == path]


# ------------------------------------------------------------------ menus
class MultiBlockType:
    MENU_ENTRY = "MENU_ENTRY"
    TOOL_BAR_BUTTON = "TOOL_BAR_BUTTON"


class ToolMenuStringCommandType:
    PYTHON = "PYTHON"


class ToolMenuEntry:
    def __init__(self, name="", type=None):
        self.name = name
        self.type = type
        self.label = self.tool_tip = self.command = None

    def set_label(self, label):
        self.label = label

    def set_tool_tip(self, tip):
        self.tool_tip = tip

    def set_string_command(self, kind, custom_type, command):
        self.command = (kind, command)


class ToolMenu:
    def __init__(self, name):
        self.name = name
        self.entries = []      # (section, ToolMenuEntry)
        self.submenus = {}

    def add_sub_menu(self, owner, section, name, label, tool_tip=""):
        _record("ToolMenu.add_sub_menu", self.name, owner, name, label)
        sub = ToolMenu(f"{self.name}.{name}")
        self.submenus[name] = sub
        STATE.menus[sub.name] = sub
        return sub

    def add_menu_entry(self, section, entry):
        _record("ToolMenu.add_menu_entry", self.name, section, entry.name)
        self.entries.append((section, entry))


class ToolMenus:
    @staticmethod
    def get():
        return ToolMenus()

    def find_menu(self, name):
        return STATE.menus.get(name)

    def refresh_all_widgets(self):
        _record("ToolMenus.refresh_all_widgets")


# ------------------------------------------------------------------ progress
class ScopedSlowTask:
    def __init__(self, work, desc=""):
        _record("ScopedSlowTask", work, desc)
        self.work, self.desc, self.done = work, desc, 0.0
        self.cancel_requested = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _record("ScopedSlowTask.exit", self.desc)
        return False

    def make_dialog(self, can_cancel=False):
        pass

    def enter_progress_frame(self, work=1.0, desc=""):
        self.done += work

    def should_cancel(self):
        return self.cancel_requested


# ------------------------------------------------------------------ Movie Render Queue
class MoviePipelineSetting(_Props):
    pass


class MoviePipelineOutputSetting(MoviePipelineSetting):
    def __init__(self):
        self.output_directory = DirectoryPath()
        self.file_name_format = "{sequence_name}.{frame_number}"
        self.zero_pad_frame_numbers = 4
        self.output_resolution = IntPoint(1920, 1080)
        self.override_existing_output = False


class MoviePipelinePostProcessPass(_Props):
    def __init__(self):
        self.enabled = False
        self.material = None
        self.high_precision_output = False


class MoviePipelineDeferredPassBase(MoviePipelineSetting):
    def __init__(self):
        self.disable_multisample_effects = False
        self.additional_post_process_materials = []


class MoviePipelineImageSequenceOutput_EXR(MoviePipelineSetting):
    def __init__(self):
        self.multilayer = False
        self.compression = None


class MoviePipelineAntiAliasingSetting(MoviePipelineSetting):
    def __init__(self):
        self.spatial_sample_count = 1
        self.temporal_sample_count = 1
        self.override_anti_aliasing = False
        self.anti_aliasing_method = None


class EXRCompressionFormat:
    NONE, ZIP, PIZ = "NONE", "ZIP", "PIZ"


class AntiAliasingMethod:
    AAM_NONE = "AAM_NONE"


class MoviePipelinePrimaryConfig:
    def __init__(self):
        self.settings = {}

    def find_or_add_setting_by_class(self, cls):
        _record("MoviePipelinePrimaryConfig.find_or_add_setting_by_class", cls.__name__)
        return self.settings.setdefault(cls, cls())


class MoviePipelineExecutorJob(_Props):
    def __init__(self):
        self.job_name = ""
        self.sequence = None
        self.map = None
        self._config = MoviePipelinePrimaryConfig()

    def get_configuration(self):
        return self._config


class MoviePipelineQueue:
    def __init__(self):
        self._jobs = []

    def get_jobs(self):
        return list(self._jobs)

    def delete_job(self, job):
        _record("MoviePipelineQueue.delete_job", job.job_name)
        self._jobs.remove(job)

    def allocate_new_job(self, cls):
        _record("MoviePipelineQueue.allocate_new_job", cls.__name__)
        job = cls()
        self._jobs.append(job)
        return job


class _Delegate:
    def __init__(self):
        self.callbacks = []

    def add_callable_unique(self, fn):
        if fn not in self.callbacks:
            self.callbacks.append(fn)

    def broadcast(self, *args):
        for fn in list(self.callbacks):
            fn(*args)


class MoviePipelinePIEExecutor:
    """Finishes on the tick after it is created: runs ``STATE.render_hook``
    for each job (the test writes the files) and broadcasts the result."""

    def __init__(self, jobs):
        self.on_executor_finished_delegate = _Delegate()
        self._jobs = jobs
        self._pending = True
        self.cancelled = False

    def cancel_all_jobs(self):
        _record("MoviePipelinePIEExecutor.cancel_all_jobs")
        self.cancelled = True

    def _tick(self):
        if not self._pending:
            return
        self._pending = False
        STATE.executors.remove(self)
        ok = not self.cancelled and all(STATE.render_hook(job) if STATE.render_hook else False for job in self._jobs)
        self.on_executor_finished_delegate.broadcast(self, ok)


class MoviePipelineQueueSubsystem:
    def get_queue(self):
        return STATE.queue

    def render_queue_with_executor(self, executor_cls):
        _record("MoviePipelineQueueSubsystem.render_queue_with_executor", executor_cls.__name__)
        executor = executor_cls(STATE.queue.get_jobs())
        STATE.__dict__.setdefault("executors", []).append(executor)
        return executor


class _World(Object):
    pass


class UnrealEditorSubsystem:
    def get_editor_world(self):
        return _World("Main", "/Game/Maps/Main.Main")


def get_editor_subsystem(cls):
    return cls()


reset()

