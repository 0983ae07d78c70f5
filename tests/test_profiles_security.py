"""Clients name model profiles, never paths (bridge/backends/profiles.py).

A name is a plain identifier looked up only in the server's folders
($GREENLIGHT_PROFILES, then the shipped one). Anything else (an absolute
path, ``../``, a separator, a leading dot, NUL) is INVALID_ARGUMENT
"unknown model profile ...; available: [...]": the same answer whether or
not such a file exists, with no server path and nothing read from it."""

from __future__ import annotations

import pytest

from bridge.backends.guides import GuidesBackend
from bridge.backends.profiles import (
    SHIPPED,
    available_profiles,
    is_profile_name,
    load_profile,
    load_profile_file,
)
from bridge.client import BridgeClient
from bridge.errors import InvalidArgumentError, PreconditionError
from bridge.shot.request import GenerationSettings

PROFILE = '''name = "{name}"
family = "animatediff"
description = "a test profile"

[components]
base = "./base"
motion_adapter = "example/motion-adapter"
'''


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    """A configured profiles folder holding "studio-v1", and, outside it, files
    a client might try to reach: a valid profile beside the folder and a secret."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "studio-v1.toml").write_text(PROFILE.format(name="studio-v1"))
    (tmp_path / "outside.toml").write_text(PROFILE.format(name="outside"))
    (tmp_path / "secret.toml").write_text('family = "TOP-SECRET-CONTENT"\n')
    monkeypatch.setenv("GREENLIGHT_PROFILES", str(folder))
    return folder


def _refusal(name: str) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as err:
        load_profile(name)
    return err.value


def test_a_name_in_the_configured_folder_loads(profiles):
    profile = load_profile("studio-v1")
    assert profile.name == "studio-v1" and profile.family == "animatediff"
    assert profile.source("base") == str((profiles / "base").resolve())   # the operator's local folder
    assert available_profiles()[0] == "studio-v1"
    shipped = sorted(p.stem for p in SHIPPED.glob("*.toml"))
    assert shipped and set(shipped) <= set(available_profiles())
    assert load_profile(shipped[0]).path == (SHIPPED / f"{shipped[0]}.toml").resolve()


@pytest.mark.parametrize("name", ["studio-v1", "animatediff-sd15", "a", "A_b-c.d", "x" * 100])
def test_plain_identifiers_are_names(name):
    assert is_profile_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "../x", "a/b", "a\\b", "/etc/passwd", "C:evil",
                                  "studio-v1.toml/..", "x\x00y", "x" * 101, " studio-v1", "studio v1", "~root"])
def test_anything_else_is_not_a_name(name):
    assert not is_profile_name(name)


def test_paths_are_refused_without_revealing_whether_the_file_exists(profiles, tmp_path):
    attempts = {
        "absolute, exists": str(tmp_path / "outside.toml"),
        "absolute, missing": str(tmp_path / "nothing-here.toml"),
        "absolute, secret": str(tmp_path / "secret.toml"),
        "traversal, exists": "../outside",
        "traversal, missing": "../nothing-here",
        "traversal with suffix": "../outside.toml",
        "hidden": ".studio-v1",
        "nul": "studio-v1\x00",
    }
    available = available_profiles()
    for what, name in attempts.items():
        err = _refusal(name)
        message = str(err)
        assert err.field == "generation.model_profile", what
        assert message.startswith("unknown model profile "), (what, message)
        assert f"available: {available}" in message, (what, message)
        assert str(profiles) not in message and str(SHIPPED) not in message, (what, message)
        assert "TOP-SECRET" not in message, (what, message)
        # not echoed (it may name a server file): an existing file and a missing one read the same
        assert message == (
            "unknown model profile (not a name: a profile is named, never a path: letters, digits, '-', '_' "
            f"and '.', not starting with '.'); available: {available}"), (what, message)
    # an unknown but well-formed name is echoed
    assert str(_refusal("nope")) == f"unknown model profile 'nope'; available: {available}"


def test_a_broken_server_profile_is_the_operators_problem_and_names_no_path(profiles, caplog):
    (profiles / "broken.toml").write_text("family = = oops\n")
    (profiles / "wrong-family.toml").write_text('family = "unet-9000"\n[components]\nbase = "x"\n')
    for name, why in (("broken", "not valid TOML"), ("wrong-family", "family must be one of")):
        with pytest.raises(PreconditionError) as err:
            load_profile(name)
        message = str(err.value)
        assert message.startswith(f"model profile {name!r} on this bridge is broken ({why}"), message
        assert str(profiles) not in message
    # the operator finds the file in the log
    assert str(profiles / "broken.toml") in caplog.text


def test_the_operators_own_commands_may_open_a_file(profiles, tmp_path):
    assert load_profile_file(tmp_path / "outside.toml").name == "outside"
    assert load_profile_file("studio-v1").name == "studio-v1"   # and names as well


class ProfileBackend(GuidesBackend):
    """The guides backend that, like the diffusion backends, loads the job's
    model profile when it checks a submit (torch-free, so the test is fast)."""

    id = "profiled"

    def check_inputs(self, shot, settings) -> None:
        super().check_inputs(shot, settings)
        load_profile(settings.model_profile)


def test_through_the_bridge_a_path_is_invalid_argument_with_no_server_path(profiles, tmp_path, start_bridge,
                                                                           small_shot):
    from bridge.server.config import ProjectSettings

    # the test profile carries no licence tables: a non-commercial project, so the licence gate lets it through
    bridge = start_bridge(backends={"profiled": ProfileBackend()}, projects={"*": ProjectSettings(commercial=False)})
    with BridgeClient(bridge.address, timeout_s=10) as client:
        accepted = client.submit(small_shot, GenerationSettings(backend="profiled", model_profile="studio-v1"))
        assert accepted.job.job_id
        messages = []
        for name in (str(tmp_path / "outside.toml"), str(tmp_path / "missing.toml"), "../outside",
                     "../missing"):
            with pytest.raises(InvalidArgumentError) as err:
                client.submit(small_shot.with_tags(version=len(messages) + 2),
                              GenerationSettings(backend="profiled", model_profile=name))
            message = str(err.value)
            assert err.value.field == "generation.model_profile"
            assert "unknown model profile" in message and str(profiles) not in message
            assert name not in message and "outside" not in message
            messages.append(message)
        assert len(set(messages)) == 1, messages   # existing and missing files answer alike


def test_a_missing_local_component_names_no_server_folder(profiles, caplog):
    from bridge.backends.loading import ModelMissingError, require_components

    profile = load_profile("studio-v1")   # base = "./base", a folder that is not there
    with pytest.raises(ModelMissingError) as err:
        require_components(profile, {"unet"})
    message = str(err.value)
    assert "model component 'unet' of profile 'studio-v1' is not available: a local folder on the bridge" in message
    assert str(profiles) not in message and "/base" not in message
    assert err.value.source == str((profiles / "base").resolve())   # kept for the operator, and logged
    assert str((profiles / "base").resolve()) in caplog.text
