"""docs/protocol.md is generated from the .proto comments and must match
protos/ (like the stub drift test in test_proto_contract.py); its content is
checked against the compiled descriptors, not against itself."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import grpc_tools  # noqa: F401  the dev extra: the same protoc as the stub drift test
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docs" / "gen_protocol.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_protocol", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fds(gen):
    return gen.descriptor_set()


def test_protocol_md_is_up_to_date(gen, fds):
    committed = (REPO / "docs" / "protocol.md").read_text()
    assert committed == gen.render(fds), (
        "docs/protocol.md is out of date with protos/; run .venv/bin/python docs/gen_protocol.py")


def test_every_declaration_and_comment_is_in_the_reference(gen, fds):
    text = gen.render(fds)
    headings = set(re.findall(r"^#{2,4} (?:message|enum|service) (\S+)$", text, re.MULTILINE))
    rpcs = set(re.findall(r"^\| `(\w+)` \| (?:stream )?\[", text, re.MULTILINE))
    ours = [f for f in fds.file if f.name.startswith("greenlight/")]
    assert {f.name for f in ours} == {"greenlight/v1/shot.proto", "greenlight/v1/bridge.proto"}
    for f in ours:
        for m in f.message_type:
            assert m.name in headings, m.name
            section = text.split(f"#### message {m.name}\n", 1)[1].split("\n#### ", 1)[0]
            for field in m.field:
                assert re.search(rf"^\| `{field.name}` \| {field.number} \|", section, re.MULTILINE), \
                    f"{m.name}.{field.name}"
        for e in f.enum_type:
            assert e.name in headings, e.name
            for value in e.value:
                assert f"| `{value.name}` | {value.number} |" in text
        for s in f.service:
            assert s.name in headings
            assert {m.name for m in s.method} <= rpcs
    # comments from each kind of place in the source land next to their declaration
    assert "| `depth_m` | 3 | [`Array`](#message-array) |  | float32 or float16 [H, W]: planar camera-space " \
           "depth in metres;" in text                                                       # field, multi-line
    assert "| `SENSOR_FIT_VERTICAL` | 3 | sensor_height_mm spans the image height |" in text  # enum value
    assert "| `WatchJob` | [`WatchJobRequest`](#message-watchjobrequest) | stream [`JobEvent`](#message-jobevent) " \
           "| Server stream of a job's events until it ends." in text                      # rpc + streaming
    assert "| `SubmitShot` | stream [`SubmitChunk`]" in text
    assert "| `max_co2e_g` | 4 | `double` | optional |" in text                            # proto3 optional
    assert "| `header` | 1 | [`SubmitHeader`](#message-submitheader) | oneof `payload` |" in text
    assert "| `pass_methods` | 7 | `map<string, string>` |" in text                        # map, not MapEntry
    assert "PassMethodsEntry" not in text
    assert "### Events\n" in text                                                           # divider heading
    assert "Canonical space (DESIGN section 5): right-handed, Z-up," in text                 # file comment
    # every link points at a heading that exists (GitHub slugs: lower case, dots dropped)
    slugs = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in slugs, target


def test_check_flag_fails_on_a_stale_file(gen, fds, tmp_path, monkeypatch):
    stale = tmp_path / "protocol.md"
    stale.write_text(gen.render(fds).replace("planar camera-space", "planer camera space"))
    monkeypatch.setattr(gen, "OUTPUT", stale)
    monkeypatch.setattr(gen, "REPO", tmp_path)
    monkeypatch.setattr(gen, "descriptor_set", lambda: fds)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    assert "planar camera-space" in stale.read_text()


def test_script_runs_from_anywhere(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
