"""The sidebar panel: the backend list from GetCapabilities, the cost line
from EstimateJob, and a layout readable at the default sidebar width.

Engine-free parts (``blender_addon.panel_model``: enum items, staleness, the
cost line's text, the fetcher) run in the pytest process, against real
bridges on loopback where they talk to one. The Blender parts run in a child
Python with the real ``bpy`` (``python -m tests.test_blender_panel SCENARIO
ARGS``, a fresh Blender per scenario), the add-on enabled, its real
properties and operators; only the layout the panel draws into is a
recording fake (``RecordingLayout``), because bpy in background mode has no
UI to draw on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_MARK = "GREENLIGHT-PANEL-RESULT "
# Width budget at the default sidebar width (~240 px at 1x UI scale, ~6 px a character): a label in the
# split layout's left column (40%, ~13 characters), and a whole line.
SPLIT_LABEL_CHARS = 13
NEEDS_TORCH_REASON = "torch is not installed here: pip install 'greenlight[diffusion]'"


# ---------------------------------------------------------------- helpers
def _needs_torch_backend():
    from bridge.backends.base import Backend, BackendInfo

    class NeedsTorch(Backend):
        id = "needs-torch"

        def info(self):
            return BackendInfo(id=self.id, description="A diffusion backend", conditions=("depth",),
                               max_frames=64, max_width=512, max_height=512, devices=("cpu",), available=False,
                               unavailable_reason=NEEDS_TORCH_REASON)

        def run(self, shot, settings, ctx):
            raise AssertionError("an unavailable backend never runs")

    return NeedsTorch()


def _bridge_with_unavailable_backend(start_bridge):
    from bridge.backends.guides import GuidesBackend

    return start_bridge(backends={"guides": GuidesBackend(), "needs-torch": _needs_torch_backend()})


@pytest.fixture
def older_bridge():
    """A real gRPC server on loopback that implements GetCapabilities only,
    as a bridge from before EstimateJob does (every other RPC: UNIMPLEMENTED)."""
    import grpc

    from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc

    class Older(bridge_pb2_grpc.BridgeServicer):
        def GetCapabilities(self, request, context):
            return bridge_pb2.Capabilities(protocol_version="greenlight.v1", server_version="0.0.9", backends=[
                bridge_pb2.BackendInfo(id="guides", description="guides", available=True)])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    bridge_pb2_grpc.add_BridgeServicer_to_server(Older(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=0)


def _free_address() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _settings(address: str):
    from blender_addon.settings import BridgeSettings

    return BridgeSettings(address=address)


def _request(address="127.0.0.1:1", frames=12, steps=0, prompt="", seed=0, job_class="interactive", hours=8.0,
             backend="guides"):
    from blender_addon import panel_model
    from bridge.shot.request import ControlSettings, GenerationSettings

    gen = GenerationSettings(backend=backend, prompt=prompt, seed=seed, steps=steps,
                             controls=(ControlSettings("depth", True, 1.0),))
    return panel_model.estimate_request(address, "previz", frames, 128, 72, gen, job_class=job_class,
                                        deadline_hours=hours)


def _joined(lines) -> str:
    """Wrapped label lines as one sentence again."""
    return " ".join(" ".join(lines).split())


def _run(name: str, timeout: float = 120, env: dict | None = None, **args) -> dict:
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0", PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "tests.test_blender_panel", name, json.dumps(args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise AssertionError(f"scenario {name} printed no result (rc {proc.returncode}):\n"
                         f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


# ---------------------------------------------------------------- enum items (no bpy)
def test_backend_items_without_capabilities_hold_guides_and_the_stored_choice():
    from blender_addon import panel_model as pm

    assert [i[0] for i in pm.backend_items(pm.backend_choices(None), "guides")] == ["guides"]
    items = pm.backend_items(pm.backend_choices(None), "animatediff")   # from a .blend made with another bridge
    assert [i[0] for i in items] == ["guides", "animatediff"]
    assert items[1][1] == "animatediff (not listed)" and items[1][3] == "QUESTION"
    assert items[0][4] == pm.backend_number("guides") == 0


def test_backend_items_mark_unavailable_ones_and_keep_numbers_when_the_list_changes():
    from blender_addon import panel_model as pm

    wan = pm.BackendChoice("wan-test", "Wan", False, "needs 24 GB of GPU memory")
    ad = pm.BackendChoice("ad-test", "AnimateDiff", True)
    caps = pm.Capabilities("h:1", (ad, wan))
    items = pm.backend_items(pm.backend_choices(caps), "ad-test")
    assert [i[0] for i in items] == ["guides", "ad-test", "wan-test"]     # guides first, always
    by_id = {i[0]: i for i in items}
    assert by_id["wan-test"][1] == "wan-test (unavailable)" and by_id["wan-test"][3] == "ERROR"
    assert "needs 24 GB of GPU memory" in by_id["wan-test"][2]
    assert by_id["ad-test"][1] == "ad-test" and by_id["ad-test"][2] == "AnimateDiff"
    # reordered and shrunk: every id keeps its number (Blender stores the number), the stored one stays listed
    later = pm.backend_items(pm.backend_choices(pm.Capabilities("h:1", (wan,))), "ad-test")
    assert {i[0]: i[4] for i in later} == {k: v[4] for k, v in by_id.items()}
    assert pm.backend_for_number(by_id["ad-test"][4]) == "ad-test"
    assert len({i[4] for i in items}) == len(items)
    # the same items come back as the very same list object, kept alive for Blender
    assert pm.backend_items(pm.backend_choices(caps), "ad-test") is items


def test_check_backend_refuses_unavailable_and_unlisted_backends_with_the_reason():
    from blender_addon import panel_model as pm
    from bridge.errors import InvalidArgumentError

    caps = pm.Capabilities("h:1", (pm.BackendChoice("guides"), pm.BackendChoice("wan", "", False, "no CUDA device")))
    with pytest.raises(InvalidArgumentError, match="no CUDA device") as err:
        pm.check_backend(caps, "wan")
    assert err.value.field == "generation.backend"
    with pytest.raises(InvalidArgumentError, match="available: guides"):
        pm.check_backend(caps, "typo")
    pm.check_backend(caps, "guides")
    pm.check_backend(None, "anything")   # never reached: the bridge decides
    pm.check_backend(pm.Capabilities("h:1", error="cannot reach"), "anything")


# ---------------------------------------------------------------- cost line and staleness (no bpy)
def test_cost_line_for_an_interactive_estimate_says_it_is_one_and_fits_the_sidebar():
    from blender_addon import panel_model as pm

    req = _request()
    cost = pm.CostEstimate(wall_s=95.0, energy_wh=0.0042, co2e_g=0.0011, site="local", basis="from 12 guides jobs")
    lines = pm.cost_lines(pm.EstimateResult(req.key, cost, made_at=time.time()), req.key)
    texts = [line.text for line in lines]
    assert texts[0] == "Estimate: 1 min 35 s wall time"
    assert texts[1] == "4.2 mWh, 0.0011 gCO2e"
    assert "Runs now at local" in texts
    assert any(t.startswith("Basis: from 12 guides jobs") for t in texts)
    assert not any("Stale" in t for t in texts)
    assert all(len(t) <= pm.LINE_CHARS for t in texts)


def test_cost_line_for_a_batch_estimate_shows_site_start_and_saving():
    from blender_addon import panel_model as pm

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    req = _request(job_class="batch", hours=12)
    assert req.scheduling.job_class == "batch" and req.scheduling.deadline is not None
    cost = pm.CostEstimate(wall_s=4000, energy_wh=12.5, co2e_g=1.5, site="nordic", planned_start=now + timedelta(
        hours=5), expected_co2e_g=1.5, run_now_co2e_g=6.0, reason="greenest window")
    lines = [line.text for line in pm.cost_lines(pm.EstimateResult(req.key, cost, made_at=now.timestamp()), req.key,
                                                 now=now.timestamp())]
    assert lines[:2] == ["Estimate: 1 h 07 min wall time", "12.5 Wh, 1.5 gCO2e"]
    joined = _joined(lines)
    assert "Batch at nordic, starts" in joined and "(in 5 h 00 min)" in joined
    assert "Saves 4.5 gCO2e (75%) vs now" in lines
    assert all(len(t) <= pm.LINE_CHARS for t in lines)
    # no saving: said so; an old batch estimate is stale (the forecast moved on)
    flat = pm.CostEstimate(wall_s=10, energy_wh=1, co2e_g=2, site="local", planned_start=now, expected_co2e_g=2,
                           run_now_co2e_g=2)
    assert "No saving vs running now" in [line.text for line in pm.cost_lines(
        pm.EstimateResult(req.key, flat, made_at=now.timestamp()), req.key, now=now.timestamp())]
    later = now.timestamp() + pm.BATCH_ESTIMATE_MAX_AGE_S + 1
    assert pm.is_stale(pm.EstimateResult(req.key, flat, made_at=now.timestamp()), req.key, now=later)


def test_estimate_goes_stale_when_the_cost_inputs_change_not_the_prompt_or_seed():
    from blender_addon import panel_model as pm

    made = _request(steps=20)
    result = pm.EstimateResult(made.key, pm.CostEstimate(1, 1, 1), made_at=time.time())
    assert not pm.is_stale(result, _request(steps=20, prompt="a red ship", seed=7).key)
    for changed in (_request(steps=30), _request(steps=20, frames=13), _request(steps=20, backend="other"),
                    _request(steps=20, job_class="batch"), _request(steps=20, address="127.0.0.1:2")):
        assert pm.is_stale(result, changed.key)
    assert pm.is_stale(result, None)   # settings that cannot make a shot
    lines = pm.cost_lines(result, _request(steps=30).key)
    assert lines[0].text.startswith("Stale") and lines[0].alert
    assert all(line.dim for line in lines if line.text.startswith("Estimate:"))


def test_cost_line_without_an_estimate_and_for_an_older_bridge():
    from blender_addon import panel_model as pm

    req = _request()
    assert [line.text for line in pm.cost_lines(None, req.key)] == ["No estimate yet: press Estimate"]
    older = [line.text for line in pm.cost_lines(pm.EstimateResult(req.key, unsupported=True), req.key)]
    assert _joined(older) == pm.OLDER_BRIDGE
    failed = pm.cost_lines(pm.EstimateResult(req.key, error="cannot reach the Greenlight bridge at h:1"), req.key)
    assert failed[0].alert and "cannot reach" in " ".join(line.text for line in failed)


def test_formatting_units():
    from blender_addon import panel_model as pm

    assert [pm.format_duration(s) for s in (0.2, 12.4, 60, 3599, 3600, 90061)] == [
        "<1 s", "12 s", "1 min 00 s", "59 min 59 s", "1 h 00 min", "25 h 01 min"]
    assert [pm.format_energy(w) for w in (0, 0.00042, 0.35, 12.5, 2500)] == [
        "0 Wh", "0.42 mWh", "350 mWh", "12.5 Wh", "2.5 kWh"]
    assert [pm.format_co2e(g) for g in (0, 0.0004, 0.12, 1500)] == ["0 gCO2e", "0.4 mgCO2e", "0.12 gCO2e",
                                                                    "1.5 kgCO2e"]


# ---------------------------------------------------------------- fetcher against real bridges (no bpy)
def test_fetcher_lists_the_bridges_backends_with_unavailable_reasons(start_bridge):
    from blender_addon import panel_model as pm

    bridge = _bridge_with_unavailable_backend(start_bridge)
    fetcher = pm.Fetcher()
    fetcher.refresh_capabilities(_settings(bridge.address))
    assert fetcher.wait(15)
    caps = fetcher.capabilities_for(bridge.address)
    assert caps is not None and caps.reached and caps.server_version
    choices = {b.id: b for b in pm.backend_choices(caps)}
    assert choices["guides"].available
    assert not choices["needs-torch"].available and choices["needs-torch"].unavailable_reason == NEEDS_TORCH_REASON
    assert fetcher.changes == 1 and not fetcher.busy()


def test_fetcher_with_no_bridge_keeps_guides_and_says_why(start_bridge):
    from blender_addon import panel_model as pm

    fetcher = pm.Fetcher()
    address = _free_address()
    fetcher.refresh_capabilities(_settings(address))
    assert fetcher.wait(15)
    caps = fetcher.capabilities_for(address)
    assert caps is not None and not caps.reached and "cannot reach the Greenlight bridge" in caps.error
    assert [b.id for b in pm.backend_choices(caps)] == ["guides"]
    assert pm.capabilities_lines(caps)[0].startswith("Not reached: cannot reach")
    # a bridge that answered once and then went away: its list is kept, marked as not reached
    bridge = _bridge_with_unavailable_backend(start_bridge)
    fetcher.refresh_capabilities(_settings(bridge.address))
    assert fetcher.wait(15)
    bridge.stop(grace=0)
    fetcher.refresh_capabilities(_settings(bridge.address))
    assert fetcher.wait(15)
    caps = fetcher.capabilities_for(bridge.address)
    assert caps.error and {b.id for b in caps.backends} == {"guides", "needs-torch"}


def test_fetcher_estimate_from_an_older_bridge_says_it_cannot_estimate(older_bridge):
    from blender_addon import panel_model as pm

    fetcher = pm.Fetcher()
    req = _request(address=older_bridge)
    fetcher.request_estimate(_settings(older_bridge), "Scene", req)
    assert fetcher.wait(15)
    result = fetcher.estimate_for("Scene")
    assert result is not None and result.unsupported and result.cost is None and result.key == req.key
    assert pm.OLDER_BRIDGE.split()[0] in pm.cost_lines(result, req.key)[0].text


def test_fetcher_estimate_end_to_end(start_bridge, small_shot):
    """Against a real bridge: before any job the figures are unknown and the
    basis says so; after one finished guides job they are real estimates,
    and a batch estimate carries the scheduler's decision."""
    from blender_addon import panel_model as pm
    from bridge.client import BridgeClient
    from bridge.jobs.model import JobState

    bridge = start_bridge()
    fetcher = pm.Fetcher()
    first = _request(address=bridge.address, frames=small_shot.frame_count)
    fetcher.request_estimate(_settings(bridge.address), "first", first)
    assert fetcher.wait(15)
    result = fetcher.estimate_for("first")
    assert result is not None and not result.unsupported and not result.error, result
    assert result.cost.wall_s > 0 and result.cost.site and result.cost.basis
    texts = [line.text for line in pm.cost_lines(result, first.key)]
    assert texts[0].startswith("Estimate: ")
    if result.cost.energy_wh == 0:
        assert texts[1] == "Wh and gCO2e: not known yet"
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        deadline = time.monotonic() + 30
        while client.job(job.job_id).state is not JobState.COMPLETED:
            assert time.monotonic() < deadline, "the guides job did not finish in 30 s"
            time.sleep(0.05)
    for job_class in ("interactive", "batch"):
        req = _request(address=bridge.address, frames=small_shot.frame_count, job_class=job_class, hours=6)
        fetcher.request_estimate(_settings(bridge.address), job_class, req)
    assert fetcher.wait(15)
    for job_class in ("interactive", "batch"):
        result = fetcher.estimate_for(job_class)
        assert result is not None and not result.unsupported and not result.error, result
        cost = result.cost
        assert cost.wall_s > 0 and cost.energy_wh > 0 and cost.co2e_g > 0 and cost.site, cost
        assert cost.planned_start is not None
        texts = [line.text for line in pm.cost_lines(result, result.key)]
        assert texts[0].startswith("Estimate: ") and "Wh, " in texts[1] and texts[1].endswith("CO2e")
    batch = fetcher.estimate_for("batch")
    assert batch.cost.run_now_co2e_g > 0
    lines = [line.text for line in pm.cost_lines(batch, batch.key)]
    assert "Batch at " in _joined(lines) and ("Saves " in _joined(lines) or "No saving" in _joined(lines))


# ---------------------------------------------------------------- real Blender
def _drawn(r):
    return r["records"]


def _props(records):
    return {rec["prop"]: rec for rec in records if rec["kind"] == "prop"}


def _check_readable(records):
    """Every field under the split layout has a short label, no row holds two labelled fields, every text line
    fits the sidebar, and every drawn property has a tooltip."""
    from blender_addon import panel_model as pm

    for rec in records:
        if rec["kind"] == "prop":
            assert rec["description"], f"{rec['prop']} has no description (tooltip)"
            if rec["label"]:
                assert rec["split"], f"{rec['prop']} is drawn without the split layout"
                assert len(rec["label"]) <= SPLIT_LABEL_CHARS, f"label {rec['label']!r} is cut at sidebar width"
        if rec["kind"] == "label":
            assert len(rec["text"]) <= pm.LINE_CHARS, f"label {rec['text']!r} is cut at sidebar width"
    rows: dict = {}
    for rec in records:
        if rec["kind"] == "prop" and rec["row"] is not None and rec["label"]:
            rows.setdefault(rec["row"], []).append(rec["prop"])
    assert all(len(v) == 1 for v in rows.values()), f"rows with two labelled fields: {rows}"


EVERY_FIELD = {"address", "project", "shot", "use_scene_range", "resolution_scale", "prompt", "negative_prompt",
               "backend_choice", "seed", "steps", "depth_strength", "pose_strength", "priority"}


def test_panel_properties_enum_and_layout_without_a_bridge():
    r = _run("props")
    # (a) every property has a tooltip
    assert r["undescribed"] == [] and r["declared"] >= 40, r
    # the backend list with no capabilities: guides only, and the stored value stays valid when the list changes
    e = r["enum"]
    assert e["no_caps"] == ["guides"] and e["default"] == "guides"
    assert e["with_caps"] == ["guides", "anim", "wan"]
    assert e["wan_item"] == ["wan (unavailable)", "Unavailable on this bridge: needs CUDA"]
    assert e["after_set"] == {"choice": "anim", "backend": "anim"}
    assert e["after_shrink"] == {"choice": "anim", "backend": "anim", "items": ["guides", "anim"]}
    assert e["script_set"] == {"choice": "wan", "items": ["guides", "wan"]}
    assert "not found" in e["bad_set"]
    # (c) the recording layout: every field, split layout, sections in order, cost line before Generate
    for key in ("records", "records_no_layout_panels"):
        records = r[key]
        _check_readable(records)
        assert EVERY_FIELD <= set(_props(records)), EVERY_FIELD - set(_props(records))
        order = [rec.get("op") or rec.get("text") for rec in records if rec["kind"] in ("operator", "label")]
        titles = ["Bridge", "Shot", "Generation", "Scheduling", "Cost (estimate)"]
        assert [t for t in order if t in titles] == titles
        assert order.index("No estimate yet: press Estimate") < order.index("greenlight.estimate") \
            < order.index("greenlight.generate")
        assert "Not fetched yet: press Refresh" in order and "greenlight.refresh" in order
        prompt = _props(records)["prompt"]
        assert prompt["label"] == "" and not prompt["split"]   # stacked: the label above the full-width field
        assert "Prompt" in order and "Negative prompt" in order
    jobs = r["records_with_job"]
    _check_readable(jobs)
    job_texts = _joined(rec.get("text", "") for rec in jobs if rec["kind"] == "label")
    assert "sh010/v003: running" in job_texts and "4.2 mWh (estimated)" in job_texts and "5/12" in job_texts
    assert {"greenlight.cancel", "greenlight.run_now", "greenlight.redownload"} <= {
        rec.get("op") for rec in jobs if rec["kind"] == "operator"}
    sections = [rec["id"] for rec in r["records"] if rec["kind"] == "section"]   # layout panels (4.1+)
    assert sections == ["greenlight_bridge", "greenlight_shot", "greenlight_generation", "greenlight_scheduling",
                        "greenlight_cost"]
    assert _props(r["records"])["backend_choice"]["value"] == "guides"
    assert r["records_batch_has_deadline"]


def test_panel_refresh_generate_refusal_and_layout_against_a_real_bridge(start_bridge):
    bridge = _bridge_with_unavailable_backend(start_bridge)
    r = _run("ops", address=bridge.address)
    assert r["refresh"] == ["FINISHED"] and r["fetched"]
    assert r["items"] == ["guides", "needs-torch"]
    assert r["needs_torch_item"] == ["needs-torch (unavailable)", f"Unavailable on this bridge: {NEEDS_TORCH_REASON}"]
    # Generate refuses the unavailable backend, with the bridge's reason, before anything renders or is sent
    assert NEEDS_TORCH_REASON in r["generate_error"]
    assert r["jobs_after_refusal"] == 0
    records = r["records_unavailable"]
    _check_readable(records)
    texts = _joined(rec["text"] for rec in records if rec["kind"] == "label")
    assert "2 backends, 1 available" in texts
    assert "Unavailable: torch is not installed" in texts
    assert _props(records)["backend_choice"]["value"] == "needs-torch"
    # an unreachable bridge (address changed: fetched at once): guides still listed, the panel says why
    assert r["unreachable"]["items"] == ["guides"]
    assert "Not reached: cannot reach" in r["unreachable"]["texts"]


def test_panel_estimate_from_an_older_bridge_shows_it_cannot_estimate(older_bridge):
    r = _run("estimate", address=older_bridge)
    assert r["estimate"] == ["FINISHED"] and r["fetched"]
    assert _joined(r["cost_texts"]) == "The bridge cannot estimate (older bridge)"
    _check_readable(r["records"])


def test_panel_estimate_end_to_end_with_staleness(start_bridge):
    """Passes once the bridge implements EstimateJob (engineer A's side)."""
    bridge = start_bridge()
    r = _run("estimate", address=bridge.address, batch=True)
    assert r["estimate"] == ["FINISHED"] and r["fetched"]
    cost = r["cost_texts"]
    assert cost[0].startswith("Estimate: ") and cost[0].endswith("wall time"), cost
    assert "Wh" in cost[1] and "CO2e" in cost[1]
    assert not any(t.startswith("Stale") for t in cost)
    assert r["frames"] == 12 and r["size"] == [64, 36]
    # after changing the steps the same estimate is shown as stale
    assert r["stale_texts"][0].startswith("Stale")
    # batch: the scheduler's decision (site, start, saving vs now)
    batch = " ".join(r["batch_texts"])
    assert "Batch at " in batch and "starts" in batch and ("Saves" in batch or "No saving" in batch)
    _check_readable(r["records"])


def test_panel_fetches_the_backends_once_the_local_bridge_serves(tmp_path):
    python = REPO / ".venv" / "bin" / "python"   # has greenlight (editable): nothing to install
    r = _run("local", timeout=180, env={"TMPDIR": str(tmp_path)}, python=str(python if python.exists() else
                                                                           sys.executable))
    assert r["state"] == "serving", r
    assert r["address"].startswith("127.0.0.1:") and r["address"] != "127.0.0.1:50151"
    assert r["fetched"] and r["reached"], r
    assert r["items"][0] == "guides" and len(r["items"]) >= 1
    assert r["drawn_address"] == r["address"]   # the panel and Generate use the local bridge
    assert r["alive_after_disable"] is False


# ---------------------------------------------------------------- child process (real bpy)
class RecordingLayout:
    """A recording fake of ``bpy.types.UILayout``: only what ``ui.draw_panel``
    calls. It draws nothing; it records each prop / label / operator / section
    with the layout state it was drawn under (property split, the row it sits
    in, the section) and checks that each property exists on the real data
    (``bl_rna``). It shows the panel's wiring and content, never how Blender
    renders it. No ``panel()`` here: see ``RecordingLayoutWithPanels``."""

    _rows = [0]

    def __init__(self, records, section="", split=False, decorate=True, row=None):
        self.records = records
        self.section = section
        self.use_property_split = split
        self.use_property_decorate = decorate
        self.row_id = row
        self.active = True
        self.enabled = True
        self.alert = False
        self.scale_x = 1.0
        self.scale_y = 1.0

    def _child(self, row=None, section=None):
        return type(self)(self.records, self.section if section is None else section, self.use_property_split,
                          self.use_property_decorate, row)

    def column(self, align=False, heading=""):
        return self._child()

    def row(self, align=False, heading=""):
        self._rows[0] += 1
        return self._child(row=self._rows[0])

    def box(self):
        return self._child()

    def split(self, factor=0.0, align=False):
        return self._child()

    def separator(self, factor=1.0):
        pass

    def label(self, text="", icon="NONE"):
        self.records.append({"kind": "label", "text": text, "icon": icon, "section": self.section})

    def operator(self, operator, text=None, icon="NONE", **kw):
        import bpy

        module, name = operator.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()   # raises KeyError for an operator that is not there
        self.records.append({"kind": "operator", "op": operator, "section": self.section})

    def prop(self, data, property, text=None, icon="NONE", expand=False, **kw):
        rna = data.bl_rna.properties.get(property)
        if rna is None:
            raise AttributeError(f"{type(data).__name__} has no property {property!r}")
        label = rna.name if text is None else text
        self.records.append({"kind": "prop", "prop": property, "label": label, "description": rna.description,
                             "split": bool(self.use_property_split), "row": self.row_id, "section": self.section,
                             "value": str(getattr(data, property))})

    def template_list(self, *args, **kw):
        self.records.append({"kind": "list", "section": self.section})

    def progress(self, factor=0.0, text=""):
        self.records.append({"kind": "label", "text": text, "icon": "NONE", "section": self.section})


class RecordingLayoutWithPanels(RecordingLayout):
    """``RecordingLayout`` with ``panel()`` (layout panels, Blender 4.1+), every section open."""

    def panel(self, idname, default_closed=False):
        self.records.append({"kind": "section", "id": idname, "default_closed": default_closed})
        self._rows[0] += 1
        return self._child(row=self._rows[0], section=idname + ":header"), self._child(section=idname)


def _draw(cls=RecordingLayoutWithPanels):
    import bpy

    from blender_addon import ui

    records: list = []
    ui.draw_panel(cls(records), bpy.context)
    return records


def _scene(frames=12, first=1):
    import bpy

    from tests.blender_scenes import _enable_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)   # factory settings first: they reset add-ons
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 256, 144, 100
    scene.frame_start, scene.frame_end = first, first + frames - 1
    _enable_addon()
    return scene


def _items(scene):
    """The backend list as Blender sees it (through RNA, with the real context)."""
    import bpy

    from blender_addon import props

    return props._backend_items(scene.greenlight, bpy.context)


def scenario_props(args):
    import bpy

    from blender_addon import host, panel_model, props

    scene = _scene()
    g = scene.greenlight
    prefs = bpy.context.preferences.addons[props.ADDON_ID].preferences
    declared = [(cls, name) for cls in props.CLASSES for name in cls.__annotations__]
    undescribed = [f"{cls.__name__}.{name}" for cls, name in declared if not cls.bl_rna.properties[name].description]
    out = {"undescribed": undescribed, "declared": len(declared)}
    address = host.bridge_address_in_blender()
    enum = {"no_caps": [i[0] for i in _items(scene)], "default": g.backend_choice}
    panel_model.FETCHER.capabilities[address] = panel_model.Capabilities(address, (
        panel_model.BackendChoice("guides", "guides"), panel_model.BackendChoice("anim", "AnimateDiff"),
        panel_model.BackendChoice("wan", "Wan", False, "needs CUDA")))
    items = _items(scene)
    enum["with_caps"] = [i[0] for i in items]
    enum["wan_item"] = [i[1:3] for i in items if i[0] == "wan"][0]
    g.backend_choice = "anim"                 # through RNA: identifier -> number -> set()
    enum["after_set"] = {"choice": g.backend_choice, "backend": g.backend}
    panel_model.FETCHER.capabilities[address] = panel_model.Capabilities(address, (
        panel_model.BackendChoice("guides", "guides"),))
    enum["after_shrink"] = {"choice": g.backend_choice, "backend": g.backend, "items": [i[0] for i in _items(scene)]}
    g.backend = "wan"                          # a script (or headless) sets the stored id directly
    enum["script_set"] = {"choice": g.backend_choice, "items": [i[0] for i in _items(scene)]}
    try:
        g.backend_choice = "no-such-backend"
        enum["bad_set"] = ""
    except TypeError as exc:
        enum["bad_set"] = str(exc)
    out["enum"] = enum
    panel_model.FETCHER.clear()
    g.backend = "guides"
    assert prefs.address == address
    out["records"] = _draw()
    out["records_no_layout_panels"] = _draw(RecordingLayout)
    g.priority = "BATCH"
    out["records_batch_has_deadline"] = "deadline_hours" in {r.get("prop") for r in _draw()}
    rec = g.jobs.add()
    rec.job_id, rec.shot, rec.version = "0f3a9c2e7b1d4e6f8a5b3c1d2e4f6a8b", "sh010", 3
    rec.backend, rec.seed = "guides", 7
    rec.state, rec.frame_count, rec.frames_done, rec.energy_wh, rec.co2e_g = "running", 12, 5, 0.0042, 0.0011
    rec.message = "waiting for a greener window at the nordic site before the deadline"
    out["records_with_job"] = _draw()
    return out


def _op(fn):
    try:
        return sorted(fn())
    except RuntimeError as exc:   # an operator's ERROR report raises in background mode
        return ["ERROR", str(exc)]


def scenario_ops(args):
    import bpy

    from blender_addon import panel_model, props

    scene = _scene()
    g = scene.greenlight
    prefs = bpy.context.preferences.addons[props.ADDON_ID].preferences
    prefs.address = args["address"]          # the update callback asks this bridge already
    out = {"refresh": _op(bpy.ops.greenlight.refresh)}
    out["fetched"] = panel_model.FETCHER.wait(20)
    items = _items(scene)
    out["items"] = [i[0] for i in items]
    out["needs_torch_item"] = [i[1:3] for i in items if i[0] == "needs-torch"][0]
    g.backend_choice = "needs-torch"
    result = _op(bpy.ops.greenlight.generate)
    out["generate_error"] = result[1] if result[0] == "ERROR" else f"not refused: {result}"
    out["jobs_after_refusal"] = len(g.jobs)
    out["records_unavailable"] = _draw()
    g.backend = "guides"
    prefs.address = "127.0.0.1:9"   # nothing listens on the discard port
    panel_model.FETCHER.wait(20)
    out["unreachable"] = {"items": [i[0] for i in _items(scene)],
                          "texts": " ".join(" ".join(r["text"] for r in _draw() if r["kind"] == "label").split())}
    return out


def scenario_estimate(args):
    import bpy

    from blender_addon import host, panel_model, props, ui

    scene = _scene(frames=12)
    g = scene.greenlight
    g.resolution_scale = 0.25
    prefs = bpy.context.preferences.addons[props.ADDON_ID].preferences
    prefs.address = args["address"]
    panel_model.FETCHER.wait(20)
    extract, _ = host.settings_from_scene_in_blender(scene)
    frames, w, h = host.shot_size_in_blender(scene, extract)
    out = {"frames": frames, "size": [w, h], "estimate": _op(bpy.ops.greenlight.estimate)}
    out["fetched"] = panel_model.FETCHER.wait(20)

    def cost_texts():
        return [r["text"] for r in _draw() if r["kind"] == "label" and r["section"] == "greenlight_cost"]

    out["cost_texts"] = cost_texts()
    out["records"] = _draw()
    g.steps = 25
    out["stale_texts"] = cost_texts()
    assert ui.current_estimate_key(scene, args["address"]) is not None
    if args.get("batch"):
        g.priority = "BATCH"
        g.deadline_hours = 12
        _op(bpy.ops.greenlight.estimate)
        panel_model.FETCHER.wait(20)
        out["batch_texts"] = cost_texts()
    return out


def scenario_local(args):
    """"Use a local bridge": when it reaches SERVING (the timer's tick), the
    panel's backend list is fetched from it without pressing Refresh."""
    import bpy

    from blender_addon import host, panel_model, props, runtime
    from tests.blender_scenes import _pid_alive, _raise

    import addon_utils

    scene = _scene()
    prefs = bpy.context.preferences.addons[props.ADDON_ID].preferences
    prefs.bridge_python = args["python"]
    prefs.use_local_bridge = True             # the update callback starts it (without blocking)
    deadline = time.monotonic() + 90
    lb = runtime.LOCAL["bridge"]
    while time.monotonic() < deadline and (lb is None or lb.state.value in ("stopped", "starting")):
        runtime.local_bridge_tick()           # what the bpy.app.timers callback runs
        lb = runtime.LOCAL["bridge"]
        time.sleep(0.1)
    out = {"state": lb.state.value if lb else None, "address": lb.address if lb else "",
           "fetched": panel_model.FETCHER.wait(30)}
    caps = panel_model.FETCHER.capabilities_for(out["address"])
    out["reached"] = bool(caps is not None and caps.reached)
    out["items"] = [i[0] for i in _items(scene)]
    out["drawn_address"] = host.bridge_address_in_blender()
    pid = lb.pid if lb else None
    addon_utils.disable("blender_addon", default_set=True, handle_error=_raise)
    out["alive_after_disable"] = _pid_alive(pid)
    return out


SCENARIOS = {"props": scenario_props, "ops": scenario_ops, "estimate": scenario_estimate, "local": scenario_local}


if __name__ == "__main__":
    name, scenario_args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    result = SCENARIOS[name](scenario_args)
    sys.stdout.write(_MARK + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    from blender_addon import compat

    compat.end_process_in_blender(0)   # a plain exit segfaults on bpy 4.2.23 after an add-on registered classes
