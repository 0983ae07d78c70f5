"""Encryption at rest per project (docs/governance.md), on real bridges over
loopback gRPC with a real key file: a project set to encrypt leaves no PNG
and no shot bytes in the clear on disk while clients get the same frames; a
wrong or missing key fails with a clear error and no other project notices;
rotation keeps every frame readable; a removed project's key is shredded.

The backend is the paced test backend (flat frames); the shot's depth is a
known value so its bytes can be searched for."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import grpc
import numpy as np
import pytest

from bridge.client import BridgeClient, EventKind
from bridge.errors import PreconditionError
from bridge.governance.encryption import MAGIC, Keyring, key_id, read_key_file, write_key_file
from bridge.jobs.images import read_png_metadata
from bridge.server.config import ProjectSettings
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot
from tests.helpers.backends import PacedBackend

PNG = b"\x89PNG\r\n\x1a\n"
DEPTH_M = np.float32(7.3125)          # exact in float32; the shot's depth everywhere
DEPTH_BYTES = DEPTH_M.tobytes() * 4   # four depth values in a row, as a shot's pass holds them


def _shot(project: str, frames: int = 3):
    shot = sample_shot(frames=frames, width=32, height=24).with_tags(project=project)
    frames_ = [dataclasses.replace(f, depth_m=np.full((24, 32), DEPTH_M, np.float32)) for f in shot.frames]
    return dataclasses.replace(shot, frames=tuple(frames_))


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "keys" / "keys.toml"     # outside every data folder
    from bridge.cli import main

    assert main(["keys", "new", "secret", "--key-file", str(path)]) == 0
    assert (os.stat(path).st_mode & 0o777) == 0o600
    return path


def _bridge(start_bridge, data_dir, key_file, **config):
    config.setdefault("projects", {"secret": ProjectSettings(encrypt=True)})
    return start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, data_dir=data_dir, key_file=key_file,
                        **config)


def _download(client, shot, out):
    job_id = client.submit(shot, GenerationSettings(backend="paced")).job.job_id
    final = client.download(job_id, out)
    assert final is not None and final.kind is EventKind.COMPLETED, final
    return job_id


def _pixels(path):
    from bridge.governance.replay import decode_png

    return decode_png(path.read_bytes())


def _files(folder, skip=()):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(s in path.parts for s in skip):
            yield path


def test_an_encrypted_project_keeps_nothing_in_the_clear_and_clients_get_the_same_frames(
        start_bridge, tmp_path, key_file):
    data_dir = tmp_path / "data"
    bridge = _bridge(start_bridge, data_dir, key_file)
    with BridgeClient(bridge.address) as client:
        secret = _download(client, _shot("secret"), tmp_path / "secret")
        clear = _download(client, _shot("clear"), tmp_path / "clear")
        # watch from a later frame: read through the store, opened, as before
        watched = [e for e in client.watch(secret, from_frame=1) if e.kind is EventKind.FRAME]
    bridge.stop(grace=0)

    # clients receive plain PNG, pixel for pixel what the unencrypted project got
    got = sorted((tmp_path / "secret").glob("frame_*.png"))
    ref = sorted((tmp_path / "clear").glob("frame_*.png"))
    assert len(got) == len(ref) == 3
    for a, b in zip(got, ref, strict=True):
        assert a.read_bytes()[:8] == PNG and read_png_metadata(a.read_bytes())["job_id"] == secret
        assert np.array_equal(_pixels(a), _pixels(b))
    assert [e.frame.index for e in watched] == [1, 2]

    # on disk: the encrypted project's files are sealed; no PNG, no depth bytes anywhere but the clear job
    secret_files = list(_files(data_dir / "jobs" / secret))
    assert {p.name for p in secret_files} >= {"shot.pb", "frame_00000.png", "frame_00002.png"}
    for path in secret_files:
        if path.name != "report.json":
            assert path.read_bytes().startswith(MAGIC), path.name
    for path in _files(data_dir, skip=(clear,)):
        data = path.read_bytes()
        assert PNG not in data and DEPTH_BYTES not in data, path.relative_to(data_dir)
    # the search finds both in the clear project's files: it would have caught them
    clear_bytes = b"".join(p.read_bytes() for p in _files(data_dir / "jobs" / clear))
    assert PNG in clear_bytes and DEPTH_BYTES in clear_bytes

    # key use is audited (once per job and purpose, never the key)
    audit = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    uses = {(r["detail"]["use"], r["detail"]["file"]) for r in audit if r["rpc"] == "KeyUse" and r["job"] == secret}
    assert uses == {("encrypt", "shot.pb"), ("decrypt", "shot.pb"), ("encrypt", "frame"), ("decrypt", "frame")}
    kid = key_id(read_key_file(key_file)["secret"][0])
    assert all(r["detail"]["key_id"] == kid for r in audit if r["rpc"] == "KeyUse")
    assert not any(r["rpc"] == "KeyUse" and r["project"] == "clear" for r in audit)


def test_a_wrong_or_missing_key_fails_clearly_and_other_projects_are_unaffected(start_bridge, tmp_path, key_file):
    data_dir = tmp_path / "data"
    bridge = _bridge(start_bridge, data_dir, key_file)
    with BridgeClient(bridge.address) as client:
        secret = _download(client, _shot("secret"), tmp_path / "secret")
        clear = _download(client, _shot("clear"), tmp_path / "clear")
    bridge.stop(grace=0)
    right = read_key_file(key_file)["secret"][0]

    # a wrong key: the secret job's frames and shot refuse to open, saying which key they need
    wrong = tmp_path / "keys" / "wrong.toml"
    write_key_file(wrong, {"secret": [os.urandom(32)]})
    bridge = _bridge(start_bridge, data_dir, wrong)
    with BridgeClient(bridge.address) as client:
        with pytest.raises(PreconditionError) as err:
            client.download(secret, tmp_path / "again")
        message = str(err.value)
        assert f"encrypted with key {key_id(right)}" in message and "does not have" in message
        assert str(data_dir) not in message and "Traceback" not in message
        # the other project is untouched: its frames stream, its new jobs run
        assert client.download(clear, tmp_path / "clear-again").kind is EventKind.COMPLETED
        assert _download(client, _shot("clear"), tmp_path / "clear-new")
    store = bridge.manager.store
    with pytest.raises(PreconditionError, match="uploaded shot is encrypted with key"):
        store.read_shot_bytes(secret)
    bridge.stop(grace=0)

    # no keys at all for an encrypting project: submits are refused before the upload, others go on
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, data_dir=tmp_path / "data2",
                          projects={"secret": ProjectSettings(encrypt=True)})
    with BridgeClient(bridge.address) as client:
        with pytest.raises(PreconditionError, match="set to encrypt at rest, but this bridge has no key"):
            client.submit(_shot("secret"), GenerationSettings(backend="paced"))
        assert _download(client, _shot("clear"), tmp_path / "clear-3")
    assert list((tmp_path / "data2" / "incoming").iterdir()) == []

    # an altered sealed file is refused as such
    frame = data_dir / "jobs" / secret / "frames" / "frame_00001.png"
    raw = bytearray(frame.read_bytes())
    raw[-1] ^= 0x01
    frame.write_bytes(bytes(raw))
    keyring = Keyring(encrypts=lambda p: p == "secret", key_file=key_file, environ={})
    with pytest.raises(PreconditionError, match="does not decrypt with project 'secret'"):
        keyring.open("secret", secret, frame.name, bytes(raw), "frame 1")


def test_rotation_keeps_every_frame_readable(start_bridge, tmp_path, key_file):
    from bridge.cli import main

    data_dir = tmp_path / "data"
    bridge = _bridge(start_bridge, data_dir, key_file)
    with BridgeClient(bridge.address) as client:
        secret = _download(client, _shot("secret", frames=4), tmp_path / "before")
    bridge.stop(grace=0)
    old = key_id(read_key_file(key_file)["secret"][0])
    sealed_before = (data_dir / "jobs" / secret / "frames" / "frame_00002.png").read_bytes()

    assert main(["keys", "rotate", "secret", "--data-dir", str(data_dir), "--key-file", str(key_file)]) == 0
    keys = read_key_file(key_file)["secret"]
    assert len(keys) == 1 and key_id(keys[0]) != old          # the old key is gone
    sealed_after = (data_dir / "jobs" / secret / "frames" / "frame_00002.png").read_bytes()
    assert sealed_after != sealed_before and sealed_after[len(MAGIC):len(MAGIC) + 8].hex() == key_id(keys[0])
    audit = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    rotate = [r for r in audit if r["rpc"] == "KeyRotate"]
    assert rotate and rotate[-1]["detail"]["old_key_ids"] == old and rotate[-1]["detail"]["files"] == 5

    bridge = _bridge(start_bridge, data_dir, key_file)
    with BridgeClient(bridge.address) as client:
        assert client.download(secret, tmp_path / "after").kind is EventKind.COMPLETED
    before = sorted((tmp_path / "before").glob("frame_*.png"))
    after = sorted((tmp_path / "after").glob("frame_*.png"))
    assert len(after) == 4 and [a.read_bytes() for a in after] == [b.read_bytes() for b in before]


def test_a_key_file_must_be_private_and_outside_the_data_folder(start_bridge, tmp_path, key_file):
    os.chmod(key_file, 0o644)
    with pytest.raises(PreconditionError, match="chmod 600"):
        _bridge(start_bridge, tmp_path / "data", key_file)
    os.chmod(key_file, 0o600)
    inside = tmp_path / "data" / "keys.toml"
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(key_file, inside)
    os.chmod(inside, 0o600)
    with pytest.raises(PreconditionError, match="outside the data folder"):
        _bridge(start_bridge, tmp_path / "data", inside)


def test_retention_shreds_a_removed_projects_key(start_bridge, tmp_path, key_file):
    from bridge.server.retention import purge

    data_dir = tmp_path / "data"
    bridge = _bridge(start_bridge, data_dir, key_file, retention_days={"secret": 0})
    with BridgeClient(bridge.address) as client:
        secret = _download(client, _shot("secret"), tmp_path / "out")
    backup = tmp_path / "backup.png"      # a careless backup of a sealed frame
    shutil.copy(data_dir / "jobs" / secret / "frames" / "frame_00000.png", backup)
    shredded = key_id(read_key_file(key_file)["secret"][0])
    time.sleep(0.01)
    result = purge(bridge.manager.store, now=time.time() + 1, retention_days={"secret": 0})
    assert [j.job_id for j, _ in result.deleted] == [secret] and result.shredded == {"secret": [shredded]}
    assert "secret" not in read_key_file(key_file)
    with pytest.raises(PreconditionError, match=f"encrypted with key {shredded}, which this bridge does not have"):
        bridge.manager.store.keyring.open("secret", secret, "frame_00000.png", backup.read_bytes(), "frame 0")
    # the project's next job gets a fresh key
    with BridgeClient(bridge.address) as client:
        _download(client, _shot("secret"), tmp_path / "out2")
    assert key_id(read_key_file(key_file)["secret"][0]) != shredded
    bridge.stop(grace=0)
    audit = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    assert any(r["rpc"] == "KeyDelete" and r["detail"]["key_ids"] == shredded for r in audit)
    assert any(r["rpc"] == "KeyCreate" and r["project"] == "secret" for r in audit)


def test_grpc_status_of_a_missing_key_is_failed_precondition(start_bridge, tmp_path, key_file):
    """The wire code a client sees (not only the typed error it rebuilds)."""
    from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc

    data_dir = tmp_path / "data"
    bridge = _bridge(start_bridge, data_dir, key_file)
    with BridgeClient(bridge.address) as client:
        secret = _download(client, _shot("secret"), tmp_path / "out")
    bridge.stop(grace=0)
    empty = tmp_path / "keys" / "empty.toml"
    write_key_file(empty, {})
    bridge = _bridge(start_bridge, data_dir, empty)
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            for _ in stub.WatchJob(bridge_pb2.WatchJobRequest(job_id=secret), timeout=10):
                pass
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "does not have for project 'secret'" in (err.value.details() or "")
