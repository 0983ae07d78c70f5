"""The Ray executor on a local Ray instance started by the test: CPU only,
a custom resource "site:a" standing in for a site. A real JobStore in a
temp dir, the real PacedBackend, frames streamed back through a Ray
streaming generator. GPU placement (num_gpus=1) is checked on a CUDA
machine, not here."""

from __future__ import annotations

import io
import math
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import ray  # the [ray] extra, installed by [dev]

from bridge.energy.accounting import Site  # noqa: E402
from bridge.energy.meters import CpuTimeEstimateMeter  # noqa: E402
from bridge.jobs.channels import ChannelRegistry  # noqa: E402
from bridge.jobs.model import AttemptOutcome, Decision, JobState  # noqa: E402
from bridge.jobs.store import JobStore  # noqa: E402
from bridge.scheduling.ray_executor import RayExecutor  # noqa: E402
from bridge.shot.request import GenerationSettings, SchedulingSettings  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from bridge.shot.wire import shot_to_pb  # noqa: E402
from tests.helpers.backends import PacedBackend  # noqa: E402


class RecordingStore(JobStore):
    """A real store that also notes when each frame arrived, and the job's
    state at that moment."""

    def __init__(self, root):
        super().__init__(root)
        self.arrivals: list[tuple[str, int, float, str]] = []

    def add_frame(self, job_id, record, data, attempt=None):
        state = self.get(job_id).state.value
        ok = super().add_frame(job_id, record, data, attempt)
        self.arrivals.append((job_id, record.index, time.monotonic(), state))
        return ok


@pytest.fixture(scope="module")
def ray_site_a():
    ray.init(num_cpus=2, resources={"site:a": 1}, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _submit(store, n_frames, site="a", request_id="r", backend="paced"):
    shot = sample_shot(frames=n_frames, width=32, height=18)
    upload = store.new_upload_dir()
    (upload / "shot.pb").write_bytes(shot_to_pb(shot).SerializeToString())
    job, _ = store.create_job(upload, project="p", shot="s", version=1, request_id=request_id, shot_sha256=request_id,
                              backend=backend, frame_count=n_frames, work_estimate=float(n_frames),
                              generation=GenerationSettings(backend=backend, seed=1),
                              scheduling=SchedulingSettings(job_class="batch"))
    decision = Decision(job_id=job.job_id, job_class="batch", site=site, planned_start=datetime.now(UTC))
    return store.transition(job.job_id, JobState.SCHEDULED, "planned", decision=decision)


def _wait(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def executor(ray_site_a, tmp_path):
    store = RecordingStore(tmp_path)
    channels = ChannelRegistry()
    backends = {"paced": PacedBackend(frame_s=0.15), "failing": PacedBackend(frame_s=0.05, fail_at=2)}
    backends["failing"].id = "failing"
    # the bridge's home site is elsewhere: a job that runs at site "a" is priced with a's grid, PUE and WUE
    home = Site(name="home", grid_region="DE", pue=1.1)
    remote = Site(name="a", grid_region="FR", pue=1.4, wue_l_per_kwh=1.8, wue_source="test: remote site's WUE")
    ex = RayExecutor(store, channels, backends, CpuTimeEstimateMeter(), home, sites={"home": home, "a": remote},
                     slots=2, num_gpus=0, num_cpus=0.5, site_resource_amount=1.0,
                     meter_factory=CpuTimeEstimateMeter, cancel_grace_s=3.0)
    ex.start()
    yield ex
    ex.stop()
    store.close()


def test_job_runs_end_to_end_with_frames_streamed_in_order(executor):
    store = executor.store
    job = _submit(store, 8)
    executor.enqueue(job.job_id)
    assert _wait(lambda: store.get(job.job_id).state.terminal, 45)
    done = store.get(job.job_id)
    assert done.state is JobState.COMPLETED, done.state_reason
    arrivals = [a for a in store.arrivals if a[0] == job.job_id]
    assert [a[1] for a in arrivals] == list(range(8))            # in order, each once
    # streamed while running: the first frame was stored while the job ran,
    # well before the last one (8 frames x 0.15 s apart)
    assert arrivals[0][3] == "running"
    assert arrivals[-1][2] - arrivals[0][2] > 0.7
    from PIL import Image
    stored = store.frames(job.job_id)
    for f in stored:
        img = Image.open(io.BytesIO(store.frame_file(job.job_id, f).read_bytes()))
        px = np.asarray(img)
        assert px.shape == (18, 32, 3) and int(px[0, 0, 0]) == (f.index * 37) % 256
        # the figures written into the file on the worker's behalf are the stored record's
        text = img.text
        assert float(text["greenlight:energy_wh"]) == pytest.approx(f.energy_wh, rel=1e-8)
        assert float(text["greenlight:co2e_g_location"]) == pytest.approx(f.co2e_g_location, rel=1e-8)
        assert text["greenlight:site"] == "a" and text["greenlight:frame"] == str(f.index)
        assert f.site == "a" and f.attempt == 1 and f.energy_wh > 0
        remote = executor.sites["a"]
        assert f.pue == 1.4 and f.intensity_g_per_kwh == remote.intensity_g_per_kwh != executor.site.intensity_g_per_kwh
        assert f.co2e_g_location == f.energy_wh * 1.4 / 1000.0 * remote.intensity_g_per_kwh
    report = store.report(job.job_id)
    assert report.state is JobState.COMPLETED and report.frames == 8 and report.site == "a"
    assert (report.pue, report.grid_region, report.wue_l_per_kwh) == (1.4, "FR", 1.8)
    assert report.water_l == report.energy.energy_wh / 1000.0 * 1.8
    assert report.energy.meter.startswith("cpu-time-model") and report.energy.measured is False
    # each frame keeps the energy it was charged when it arrived, never re-attributed at the end
    assert list(report.per_frame) == stored
    # the job total is the exact sum of its frames and what the attempt used outside them
    assert report.frames_energy_wh == math.fsum(f.energy_wh for f in report.per_frame)
    assert report.energy.energy_wh == math.fsum(
        [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
    assert report.energy.co2e_g_location == math.fsum(
        [*(f.co2e_g_location for f in report.per_frame),
         *(a.unattributed_co2e_g_location for a in report.attempts)])
    (attempt,) = report.attempts
    assert attempt.outcome is AttemptOutcome.COMPLETED and attempt.frames == 8 and attempt.site == "a"
    assert attempt.frames_energy_wh == pytest.approx(report.frames_energy_wh, rel=1e-12)
    assert not executor.is_running(job.job_id)


def test_cancel_kills_the_remote_task_and_frees_the_site(executor):
    store = executor.store
    job = _submit(store, 200, request_id="long")
    executor.enqueue(job.job_id)
    assert _wait(lambda: len(store.frames(job.job_id)) >= 2, 45)
    assert executor.is_running(job.job_id)
    t = time.monotonic()
    assert executor.cancel_running(job.job_id)
    assert _wait(lambda: store.get(job.job_id).state.terminal, 15)
    assert store.get(job.job_id).state is JobState.CANCELLED
    assert time.monotonic() - t < 5
    n = len(store.frames(job.job_id))
    assert 2 <= n < 200
    time.sleep(0.5)
    assert len(store.frames(job.job_id)) == n                     # nothing arrives after the cancel
    report = store.report(job.job_id)
    assert report.state is JobState.CANCELLED and report.frames == n
    assert [a.outcome for a in report.attempts] == [AttemptOutcome.CANCELLED]
    assert report.energy.energy_wh == math.fsum(
        [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
    # site:a has room for one job at a time: a new job there runs, so the
    # cancelled task released it
    nxt = _submit(store, 3, request_id="after")
    executor.enqueue(nxt.job_id)
    assert _wait(lambda: store.get(nxt.job_id).state.terminal, 30)
    assert store.get(nxt.job_id).state is JobState.COMPLETED
    assert executor.cancel_running(nxt.job_id) is False


def test_backend_failure_and_unknown_site_fail_the_job_with_reasons(executor):
    store = executor.store
    bad = _submit(store, 5, request_id="bad", backend="failing")
    nowhere = _submit(store, 3, site="zz", request_id="zz")
    executor.enqueue(bad.job_id)
    executor.enqueue(nowhere.job_id)
    assert _wait(lambda: store.get(bad.job_id).state.terminal and store.get(nowhere.job_id).state.terminal, 30)
    b = store.get(bad.job_id)
    assert b.state is JobState.FAILED and "told to fail at frame 2" in b.state_reason
    assert sorted(f.index for f in store.frames(bad.job_id)) == [0, 1]
    report = store.report(bad.job_id)
    assert report.state is JobState.FAILED and [f.index for f in report.per_frame] == [0, 1]
    assert [a.outcome for a in report.attempts] == [AttemptOutcome.FAILED]
    assert report.energy.energy_wh == math.fsum(
        [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
    z = store.get(nowhere.job_id)
    assert z.state is JobState.FAILED and "no Ray node offers resource 'site:zz'" in z.state_reason
