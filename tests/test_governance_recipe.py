"""Recipes and replay (docs/governance.md) on the tiny random-weight
AnimateDiff model, CPU: a job's report carries its recipe; replaying it
from the stopped bridge's folder is bit-identical; one changed pass byte in
the stored shot shows as a different input hash."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bridge.client import BridgeClient, EventKind
from bridge.governance import recipe as rc
from bridge.jobs.model import JobState
from bridge.proto.greenlight.v1 import shot_pb2
from bridge.shot.request import ControlSettings, GenerationSettings
from bridge.shot.synthetic import sample_shot

LICENSES = """
[licenses.base]
id = "LicenseRef-Greenlight-random-weights"
commercial = "yes"
url = "https://example.invalid/random-weights"
checked = "2026-12-01"

[licenses.motion_adapter]
id = "LicenseRef-Greenlight-random-weights"
commercial = "yes"
url = "https://example.invalid/random-weights"
checked = "2026-12-01"

[licenses.controlnet_depth]
id = "LicenseRef-Greenlight-random-weights"
commercial = "yes"
url = "https://example.invalid/random-weights"
checked = "2026-12-01"

[licenses.controlnet_pose]
id = "LicenseRef-Greenlight-random-weights"
commercial = "yes"
url = "https://example.invalid/random-weights"
checked = "2026-12-01"
"""


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    """The tiny model, on $GREENLIGHT_PROFILES as "tiny", its (locally made, random) weights cleared."""
    from bridge.backends.tiny import build_tiny_animatediff

    profile = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-gov"))
    if "[licenses." not in profile.read_text():
        profile.write_text(profile.read_text() + LICENSES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        yield profile


def _generation(seed=5):
    return GenerationSettings(backend="animatediff", prompt="a robot", seed=seed, steps=2, model_profile="tiny",
                              controls=(ControlSettings("depth"), ControlSettings("pose", enabled=False)))


def _run_job(start_bridge, data_dir, shot, generation):
    bridge = start_bridge(data_dir=data_dir)
    with BridgeClient(bridge.address) as client:
        job_id = client.submit(shot, generation).job.job_id
        final = None
        deadline = time.monotonic() + 120
        for event in client.watch(job_id):
            if event.kind in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED):
                final = event
                break
            assert time.monotonic() < deadline
        report = client.report(job_id)
    assert final is not None and final.kind is EventKind.COMPLETED, final
    bridge.stop(grace=0)
    return job_id, report


@pytest.mark.diffusion
def test_report_carries_a_recipe_and_replay_is_bit_identical(start_bridge, tiny_profile, tmp_path):
    from bridge.cli import main

    shot = sample_shot(frames=4, width=64, height=64)
    data_dir = tmp_path / "data"
    job_id, report = _run_job(start_bridge, data_dir, shot, _generation())
    recipe = report.recipe
    assert report.state is JobState.COMPLETED
    assert report.recipe_hash == rc.recipe_hash(recipe) and len(report.recipe_hash) == 16
    assert recipe["seed"] == 5 and recipe["generation"]["steps"] == 2 and recipe["generation"]["prompt"] == "a robot"
    from bridge.backends.devices import pick_device

    assert recipe["device"] == {"class": "cpu", "name": "cpu",
                                "dtype": str(pick_device().dtype).removeprefix("torch.")}
    assert set(recipe["libraries"]) >= {"torch", "diffusers", "numpy"}
    components = recipe["profile"]["components"]
    assert set(components) == {"base", "motion_adapter", "controlnet_depth", "controlnet_pose"}
    for entry in components.values():   # local folders: a content hash of every file
        assert len(entry["content_sha256"]) == 64
        assert entry["license"]["id"] == "LicenseRef-Greenlight-random-weights"
    assert recipe["inputs"]["passes"] == rc.pass_digests(shot)
    assert recipe["inputs"]["digest"] == rc.PASS_DIGEST
    # the weights were hashed once and cached in the data folder by path, size and mtime
    cache = rc.HashCache.for_data_dir(data_dir)
    assert cache.path is not None and cache.path.is_file()
    base = tiny_profile.parent / "base"
    assert cache.folder_sha256(base) == components["base"]["content_sha256"] and cache.hashed == 0

    # the stopped bridge's folder: every frame made again, bit for bit
    assert main(["replay", job_id, "--data-dir", str(data_dir)]) == 0
    from bridge.backends import default_backends
    from bridge.governance.replay import replay
    from bridge.jobs.store import JobStore

    store = JobStore(data_dir)
    try:
        result = replay(store, job_id, default_backends())
    finally:
        store.close()
    assert result.identical and [f.index for f in result.frames] == [0, 1, 2, 3]
    assert all(f.max_diff == 0 for f in result.frames)
    assert result.replay_hash == result.recipe_hash and result.environment_changes == []


@pytest.mark.diffusion
def test_one_changed_pass_byte_shows_as_a_different_input_hash(start_bridge, tiny_profile, tmp_path, capsys):
    from bridge.cli import main

    shot = sample_shot(frames=4, width=64, height=64)
    data_dir = tmp_path / "data"
    job_id, report = _run_job(start_bridge, data_dir, shot, _generation(seed=9))
    stored = data_dir / "jobs" / job_id / "shot.pb"
    msg = shot_pb2.Shot()
    msg.ParseFromString(stored.read_bytes())
    depth = msg.frames[2].depth_m
    raw = bytearray(depth.data)
    raw[100] ^= 0x01                      # one bit of one depth value of frame 2
    depth.data = bytes(raw)
    stored.write_bytes(msg.SerializeToString())

    code = main(["replay", job_id, "--data-dir", str(data_dir)])
    out = capsys.readouterr()
    assert code == 1
    assert "input differs: inputs.passes.depth:" in out.out
    assert "inputs.passes.camera" not in out.out and "inputs.passes.pose" not in out.out
    assert "input differs: inputs.shot_sha256:" in out.out
    assert "likely cause: the stored shot differs" in out.err
    assert report.recipe["inputs"]["passes"]["depth"] != rc.pass_digests(_parsed(stored))["depth"]


def _parsed(path):
    from bridge.shot.wire import shot_from_pb

    msg = shot_pb2.Shot()
    msg.ParseFromString(path.read_bytes())
    return shot_from_pb(msg)


def test_recipe_hash_is_stable_and_sensitive():
    shot = sample_shot(frames=3, width=32, height=32)
    inputs = rc.inputs_facts(shot, "ab" * 32)
    a = rc.build_recipe(backend="guides", generation=GenerationSettings(seed=1).to_dict(), inputs=inputs)
    b = rc.build_recipe(backend="guides", generation=GenerationSettings(seed=1).to_dict(),
                        inputs=json.loads(json.dumps(inputs)))
    c = rc.build_recipe(backend="guides", generation=GenerationSettings(seed=2).to_dict(), inputs=inputs)
    assert rc.recipe_hash(a) == rc.recipe_hash(b) != rc.recipe_hash(c)
    assert rc.compare(a, c) == ["generation.seed: 1 -> 2", "seed: 1 -> 2"]
    # each pass kind has its own digest: a changed depth value changes depth alone
    frames = list(shot.frames)
    depth = np.array(frames[1].depth_m, copy=True)
    depth[0, 0] += 1.0
    import dataclasses

    frames[1] = dataclasses.replace(frames[1], depth_m=depth)
    changed = rc.pass_digests(dataclasses.replace(shot, frames=tuple(frames)))
    before = rc.pass_digests(shot)
    assert {k for k in before if before[k] != changed[k]} == {"depth"}
