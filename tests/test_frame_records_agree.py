"""One frame, one set of figures: for random jobs (frame count, order,
per-frame work, meter readings, PUE, market factor) on a real bridge, the
frame records streamed live, re-watched, in the report, in the ledger and in
the OTIO metadata are equal field by field, and the report's totals are the
exact sums of those records. Nothing is re-priced after a frame is made."""

import dataclasses
import math
import queue
import random
import time
import uuid

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.backends.base import Backend, BackendInfo
from bridge.client import BridgeClient
from bridge.client.otio_export import read_version, version_metadata
from bridge.energy.accounting import Site
from bridge.energy.ledger import Ledger
from bridge.energy.meters import Reading
from bridge.jobs.images import read_png_metadata
from bridge.jobs.model import EventKind
from bridge.server.app import create_server
from bridge.server.config import BridgeConfig
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot


class ScriptedMeter:
    """A test meter (labelled as such in every record): each read advances
    the cumulative energy by the next scripted amount, so every run sees a
    different but known sequence of windows."""

    measured = False

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self.joules = 0.0
        self.reads: list[float] = []

    def read(self) -> Reading:
        self.joules += self._rng.choice([0.0, self._rng.uniform(0.0, 40.0)])
        self.reads.append(self.joules)
        return Reading(self.joules, False, "test: scripted meter", t=time.monotonic())


class ScriptedBackend(Backend):
    """Produces the shot's frames in a given order with given work, with
    progress calls between them (each one reads the meter too)."""

    id = "scripted"

    def __init__(self, order: list[int], works: list[float]):
        self.order, self.works = order, works

    def info(self) -> BackendInfo:
        return BackendInfo(id=self.id, description="test: scripted order and work", conditions=(),
                           max_frames=64, max_width=256, max_height=256, devices=("cpu",))

    def run(self, shot, settings, ctx) -> None:
        for step, index in enumerate(self.order):
            ctx.progress(step, len(self.order), "scripted")
            rgb = np.full((shot.height, shot.width, 3), (index * 41) % 256, dtype=np.uint8)
            ctx.frame(index, rgb, work=self.works[index])


def _figures(frame):
    """Everything but where the file lies and when it was written."""
    return dataclasses.replace(frame, path="", created=0.0)


jobs = st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.permutations(list(range(n))),
    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0]), min_size=n, max_size=n),
    st.integers(0, 2**31),
    st.floats(1.0, 2.0),
    st.one_of(st.none(), st.floats(0.0, 600.0)),
))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=jobs)
def test_every_view_of_a_frame_shows_the_stored_record(tmp_path, job):
    order, works, seed, pue, market = job
    n = len(order)
    site = Site(name="studio", grid_region="DE", pue=pue, market_g_per_kwh=market,
                market_source="test: supplier factor" if market is not None else "")
    meter = ScriptedMeter(seed)
    data = tmp_path / uuid.uuid4().hex
    bridge = create_server(BridgeConfig(data_dir=data, port=0, site=site),
                           backends={"scripted": ScriptedBackend(order, works)}, meter=meter)
    out = data / "out"
    try:
        with BridgeClient(bridge.address) as client:
            shot = sample_shot(frames=n, width=32, height=18)
            job_id = client.submit(shot, GenerationSettings(backend="scripted", seed=seed % 1000)).job.job_id
            live: queue.Queue = queue.Queue()
            final = client.download(job_id, out, on_event=live.put)
            live_frames = [e.frame for e in list(live.queue) if e.kind is EventKind.FRAME]
            rewatch = [e.frame for e in client.watch(job_id) if e.kind is EventKind.FRAME]
            report = client.report(job_id)
    finally:
        bridge.stop(grace=0)

    assert final is not None and final.kind is EventKind.COMPLETED and final.report == report
    assert sorted(f.index for f in live_frames) == list(range(n))    # each frame once
    stored = sorted(live_frames, key=lambda f: f.index)
    assert [_figures(f) for f in stored] == [_figures(f) for f in report.per_frame]
    assert sorted((_figures(f) for f in rewatch), key=lambda f: f.index) == [_figures(f) for f in report.per_frame]

    # exact sums, not within a tolerance
    e = report.energy
    assert report.frames_energy_wh == math.fsum(f.energy_wh for f in report.per_frame)
    assert e.energy_wh == math.fsum([*(f.energy_wh for f in report.per_frame),
                                     *(a.unattributed_wh for a in report.attempts)])
    assert e.co2e_g_location == math.fsum([*(f.co2e_g_location for f in report.per_frame),
                                           *(a.unattributed_co2e_g_location for a in report.attempts)])
    if market is None:
        assert e.co2e_g_market is None and all(f.co2e_g_market is None for f in report.per_frame)
    else:
        assert e.co2e_g_market == math.fsum([*(f.co2e_g_market for f in report.per_frame),
                                             *(a.unattributed_co2e_g_market for a in report.attempts
                                               if a.unattributed_wh > 0)])
    # each frame priced at its site's intensity with its PUE; nothing lost: the meter's total is all there
    for f in report.per_frame:
        assert f.site == "studio" and f.pue == pue and f.meter == "test: scripted meter" and not f.measured
        assert f.co2e_g_location == f.energy_wh * pue / 1000.0 * f.intensity_g_per_kwh
    metered_wh = (meter.reads[-1] - meter.reads[0]) / 3600.0
    assert math.isclose(e.energy_wh, metered_wh, rel_tol=1e-9, abs_tol=1e-15)

    # the frame files carry the same figures
    for f in stored:
        meta = read_png_metadata((out / f"frame_{f.index:05d}.png").read_bytes())
        assert float(meta["energy_wh"]) == float(f"{f.energy_wh:.9g}")
        assert float(meta["co2e_g_location"]) == float(f"{f.co2e_g_location:.9g}")
        assert meta["site"] == "studio" and meta["intensity_source"] == f.intensity_source

    # the ledger row and the report it keeps
    with Ledger.for_data_dir(data) as ledger:
        (row,) = ledger.jobs(shot.tags.project)
        assert ledger.report(job_id) == report
    assert (row["energy_wh"], row["co2e_g_location"], row["co2e_g_market"], row["frames"]) == (
        e.energy_wh, e.co2e_g_location, e.co2e_g_market, n)

    # OTIO metadata read from the downloaded folder
    meta = version_metadata(read_version(out))
    assert (meta["energy_wh"], meta["co2e_g_location"], meta["co2e_g_market"]) == (
        e.energy_wh, e.co2e_g_location, e.co2e_g_market)
    assert [(m["index"], m["energy_wh"], m["co2e_g_location"], m["co2e_g_market"], m["intensity_g_per_kwh"],
             m["intensity_source"], m["attempt"]) for m in meta["per_frame"]] == [
        (f.index, f.energy_wh, f.co2e_g_location, f.co2e_g_market, f.intensity_g_per_kwh, f.intensity_source,
         f.attempt) for f in report.per_frame]
