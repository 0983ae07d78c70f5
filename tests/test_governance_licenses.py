"""The licence map in model profiles and the commercial gate
(docs/governance.md): every shipped component has a licence; a profile with
a non-commercial component is refused for a commercial project (at the
header, before the upload) and accepted for a non-commercial one; an unknown
licence counts as not cleared. Real bridges on loopback, real profile files."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from bridge.backends.profiles import COMMERCIAL, SHIPPED, available_profiles, load_profile, load_profile_file
from bridge.client import BridgeClient, EventKind
from bridge.errors import PreconditionError
from bridge.server.config import ProjectSettings, load_config
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot
from tests.helpers.backends import PacedBackend

PROFILE = """name = "{name}"
family = "animatediff"

[components]
base = "./base"
motion_adapter = "./motion"

[licenses.base]
id = "CreativeML-OpenRAIL-M"
commercial = "yes"
url = "https://huggingface.co/spaces/CompVis/stable-diffusion-license"
checked = "2026-12-01"
"""
NON_COMMERCIAL = """
[licenses.motion_adapter]
id = "CC-BY-NC-4.0"
commercial = "no"
url = "https://creativecommons.org/licenses/by-nc/4.0/legalcode"
checked = "2026-12-01"
"""
CLEARED = NON_COMMERCIAL.replace('"CC-BY-NC-4.0"', '"Apache-2.0"').replace('"no"', '"yes"')


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "nc.toml").write_text(PROFILE.format(name="nc") + NON_COMMERCIAL)
    (folder / "unknown.toml").write_text(PROFILE.format(name="unknown"))        # motion_adapter: no table
    (folder / "cleared.toml").write_text(PROFILE.format(name="cleared") + CLEARED)
    monkeypatch.setenv("GREENLIGHT_PROFILES", str(folder))
    return folder


def test_every_shipped_component_has_a_cited_licence():
    shipped = [p.stem for p in SHIPPED.glob("*.toml")]
    assert shipped and set(shipped) <= set(available_profiles())
    for name in shipped:
        profile = load_profile(name)
        assert set(profile.licenses) == set(profile.components), name
        for component, lic in profile.licenses.items():
            assert lic.id and lic.commercial in COMMERCIAL, (name, component)
            assert lic.url.startswith("https://"), (name, component)
            dt.date.fromisoformat(lic.checked)
            assert lic.commercial == "unknown" or lic.note, (name, component)   # a "yes"/"no" says its source


def test_broken_licence_tables_are_refused_naming_the_field(tmp_path):
    cases = {
        'commercial = "maybe"': "commercial: must be one of",
        'checked = "soon"': "checked: must be a date",
        'spdx = "x"': r"unknown keys \['spdx'\]",
    }
    for line, expected in cases.items():
        key = line.split(" =")[0]
        body = "\n".join(ln for ln in NON_COMMERCIAL.splitlines() if not ln.startswith(key + " ="))
        path = tmp_path / f"{key}.toml"
        path.write_text(PROFILE.format(name="x") + body + "\n" + line + "\n")
        with pytest.raises(PreconditionError, match=expected):
            load_profile_file(path)
    path = tmp_path / "stray.toml"
    path.write_text(PROFILE.format(name="x") + NON_COMMERCIAL.replace("motion_adapter]", "vae]"))
    with pytest.raises(PreconditionError, match=r"\[licenses.vae\] names no component"):
        load_profile_file(path)


def test_unknown_counts_as_not_cleared(profiles):
    assert [c for c, _ in load_profile("unknown").uncleared()] == ["motion_adapter"]
    assert load_profile("unknown").license("motion_adapter").commercial == "unknown"
    assert [c for c, _ in load_profile("nc").uncleared()] == ["motion_adapter"]
    assert load_profile("cleared").uncleared() == []


def _gen(profile: str) -> GenerationSettings:
    return GenerationSettings(backend="paced", model_profile=profile)


def test_a_commercial_project_refuses_an_uncleared_component_and_a_non_commercial_one_accepts_it(
        start_bridge, profiles, tmp_path):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)},
                          projects={"indie": ProjectSettings(commercial=False)})
    studio = sample_shot(frames=2, width=32, height=24).with_tags(project="studio")   # commercial by default
    indie = studio.with_tags(project="indie")
    with BridgeClient(bridge.address) as client:
        for name, component_licence in (("nc", "motion_adapter: CC-BY-NC-4.0 (commercial: no)"),
                                        ("unknown", "motion_adapter: unknown (commercial: unknown)")):
            with pytest.raises(PreconditionError) as err:
                client.submit(studio, _gen(name))
            message = str(err.value)
            assert "project 'studio' is commercial" in message and component_licence in message
            assert "commercial = false" in message and str(profiles) not in message
        accepted = client.submit(studio, _gen("cleared"))
        assert client.download(accepted.job.job_id, tmp_path / "a").kind is EventKind.COMPLETED
        for name in ("nc", "unknown"):
            accepted = client.submit(indie, _gen(name))
            final = client.download(accepted.job.job_id, tmp_path / name)
            assert final.kind is EventKind.COMPLETED
            report = final.report
            assert report.recipe["profile"]["components"]["motion_adapter"]["license"]["commercial"] == (
                "no" if name == "nc" else "unknown")
            assert report.recipe_hash
    # refused at the header: nothing was uploaded, nothing left behind
    assert list(bridge.manager.store.incoming_dir.iterdir()) == []
    assert {j.project for j in bridge.manager.store.list()} == {"studio", "indie"}
    assert len(bridge.manager.store.list(project="studio")) == 1


def test_the_refusal_comes_at_the_header_as_failed_precondition(start_bridge, profiles):
    """Only a header is sent: a check made after the upload would answer "stream ended after 0 bytes"."""
    import hashlib

    from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
    from bridge.shot.wire import generation_to_pb, shot_to_pb

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)})
    shot = sample_shot(frames=2, width=32, height=24).with_tags(project="studio")
    data = shot_to_pb(shot).SerializeToString()
    header = bridge_pb2.SubmitHeader(
        request_id="r1", generation=generation_to_pb(_gen("nc")), shot_bytes=len(data),
        shot_sha256=hashlib.sha256(data).digest(), project="studio", frame_count=2,
        resolution=shot_pb2.Resolution(width=32, height=24))
    with grpc.insecure_channel(bridge.address) as channel:
        with pytest.raises(grpc.RpcError) as err:
            bridge_pb2_grpc.BridgeStub(channel).SubmitShot(iter([bridge_pb2.SubmitChunk(header=header)]), timeout=10)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "motion_adapter: CC-BY-NC-4.0 (commercial: no)" in (err.value.details() or "")


def test_projects_table_in_the_config(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[projects.indie]\ncommercial = false\n[projects."*"]\nencrypt = true\n')
    config = load_config(path)
    assert config.project("indie") == ProjectSettings(commercial=False, encrypt=False)
    assert config.project("other") == ProjectSettings(commercial=True, encrypt=True)
    path.write_text('[projects.indie]\ncommercial = "no"\n')
    with pytest.raises(Exception, match=r"\[projects.indie\] commercial: must be true or false"):
        load_config(path)
    path.write_text('[projects.indie]\nlicence = true\n')
    with pytest.raises(Exception, match="unknown keys"):
        load_config(path)


def test_models_list_shows_the_licence_column(capsys, profiles):
    from bridge.cli import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "LICENCE" in out.splitlines()[0]
    line = next(ln for ln in out.splitlines() if ln.startswith("nc "))
    assert "CC-BY-NC-4.0+CreativeML-OpenRAIL-M (not cleared: motion_adapter)" in line
    line = next(ln for ln in out.splitlines() if ln.startswith("animatediff-sd15 "))
    assert "(commercial: yes)" in line
