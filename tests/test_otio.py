"""OpenTimelineIO export of shot versions, round-tripped through the
opentimelineio library: versions downloaded from a real bridge on loopback
become one timeline that editorial can read back with the same rate,
duration, frame paths and Greenlight metadata."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio  # the [otio] extra, installed by [dev]
import pytest

from bridge.client import BridgeClient  # noqa: E402
from bridge.client.otio_export import ANIMATIC_KEY, find_versions, read_version, write_otio, write_shot_otio  # noqa: E402
from bridge.errors import InvalidArgumentError  # noqa: E402
from bridge.jobs.model import EventKind, JobReport  # noqa: E402
from bridge.shot.model import Fps  # noqa: E402
from bridge.shot.request import GenerationSettings  # noqa: E402


def _path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


@pytest.fixture
def downloaded(start_bridge, small_shot, tmp_path):
    """Two versions of one shot, generated and downloaded for real (guides backend)."""
    bridge = start_bridge()
    shot_dir = tmp_path / "out" / "demo" / "dolly"
    settings = {}
    with BridgeClient(bridge.address) as client:
        for version, seed in ((1, 7), (2, 2 ** 64 - 5)):   # the second seed does not fit int64
            gen = GenerationSettings(backend="guides", prompt=f"robot waving, take {version}", seed=seed)
            job = client.submit(small_shot.with_tags(version=version), gen).job
            streamed = []
            final = client.download(job.job_id, shot_dir / f"v{version:03d}",
                                    on_event=lambda e, seen=streamed: e.frame is not None and seen.append(e.frame))
            assert final.kind is EventKind.COMPLETED and isinstance(final.report, JobReport)
            assert final.report.frames == small_shot.frame_count
            # the report's per-frame figures are the ones streamed (fixed when each frame was made;
            # the stream does not carry the record's creation time)
            assert [replace(f, path="", created=0.0) for f in streamed] == [
                replace(f, path="", created=0.0) for f in final.report.per_frame]
            settings[version] = gen.to_dict()
    (shot_dir / "v002" / "animatic.mp4").write_bytes(b"not really an mp4")  # only its presence matters
    return shot_dir, settings


def test_versions_round_trip_through_otio(downloaded, small_shot, tmp_path):
    shot_dir, settings = downloaded
    folders = find_versions(shot_dir)
    assert [f.name for f in folders] == ["v001", "v002"]
    out = write_otio(folders, tmp_path / "dolly.otio", generations=settings)

    timeline = otio.adapters.read_from_file(str(out))
    assert timeline.name == "demo/dolly"
    assert [t.name for t in timeline.tracks] == ["v001", "v002"]
    assert list(timeline.metadata["greenlight"]["versions"]) == [1, 2]
    rate = Fps(24).value
    for track, version in zip(timeline.tracks, (1, 2)):
        assert track.kind == otio.schema.TrackKind.Video
        (clip,) = list(track)
        report = json.loads((shot_dir / f"v{version:03d}" / "report.json").read_text())
        ref = clip.media_reference
        assert isinstance(ref, otio.schema.ImageSequenceReference)
        assert ref.rate == rate and clip.duration() == otio.opentime.RationalTime(small_shot.frame_count, rate)
        assert ref.target_url_base == (shot_dir / f"v{version:03d}").resolve().as_uri() + "/"
        assert ref.number_of_images_in_sequence() == small_shot.frame_count
        # every frame URL the reference generates is a file the download wrote
        urls = [ref.target_url_for_image_number(i) for i in range(small_shot.frame_count)]
        assert [_path(u).name for u in urls] == [f"frame_{i:05d}.png" for i in range(small_shot.frame_count)]
        assert all(_path(u).is_file() for u in urls)
        meta = clip.metadata["greenlight"]
        assert meta["job_id"] == report["job_id"] and meta["version"] == version
        assert meta["backend"] == "guides"
        assert meta["prompt"] == f"robot waving, take {version}"
        assert meta["seed"] == (7 if version == 1 else str(2 ** 64 - 5))   # uint64 kept exactly, as text
        # OTIO's JSON writer may move a double by one ulp: compare floats to 1e-14
        assert meta["energy_wh"] == pytest.approx(report["energy"]["energy_wh"], rel=1e-14)
        assert meta["energy_wh"] > 0
        assert meta["energy_method"] == "estimated" and meta["meter"] == report["energy"]["meter"]
        assert meta["co2e_g_location"] == pytest.approx(report["energy"]["co2e_g_location"], rel=1e-14)
        assert meta["co2e_g_market"] is None                         # no market factor here: stays unknown
        assert meta["sci"] == pytest.approx(report["sci"], rel=1e-14)
        assert meta["sci_unit"] == "gCO2e per second of animatic"
        assert list(meta["fps"]) == [24, 1]
        assert meta["report_schema"] == report["schema_version"] == JobReport.from_dict(report).schema_version
        assert len(meta["per_frame"]) == len(report["per_frame"]) == small_shot.frame_count
        for got, want in zip(meta["per_frame"], report["per_frame"], strict=True):
            got = dict(got)
            exact = ("index", "co2e_g_market", "intensity_source", "site", "meter", "measured", "attempt")
            assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
            for k in ("energy_wh", "co2e_g_location", "intensity_g_per_kwh"):
                assert got[k] == pytest.approx(want[k], rel=1e-14)
            assert set(got) == {*exact, "energy_wh", "co2e_g_location", "intensity_g_per_kwh"}
        assert [f["index"] for f in meta["per_frame"]] == list(range(small_shot.frame_count))
        assert read_version(shot_dir / f"v{version:03d}").report == JobReport.from_dict(report)
    total = sum(json.loads((shot_dir / v / "report.json").read_text())["energy"]["energy_wh"] for v in ("v001", "v002"))
    assert timeline.metadata["greenlight"]["energy_wh_total"] == pytest.approx(total, rel=1e-12)
    # the MP4 rides along as an alternative reference only where it exists
    v1, v2 = (list(t)[0] for t in timeline.tracks)
    assert ANIMATIC_KEY not in v1.media_references()
    assert _path(v2.media_references()[ANIMATIC_KEY].target_url) == (shot_dir / "v002" / "animatic.mp4").resolve()
    assert v2.active_media_reference_key == otio.schema.Clip.DEFAULT_MEDIA_KEY


def test_shot_folder_export_and_ntsc_rate(downloaded, tmp_path):
    shot_dir, _ = downloaded
    report_path = shot_dir / "v001" / "report.json"
    report = json.loads(report_path.read_text())
    report["fps"] = [24000, 1001]
    report["generation"] = {"seed": 11, "prompt": "from the report"}   # a report that carries its generation
    report_path.write_text(json.dumps(report))
    shutil.rmtree(shot_dir / "v002")
    timeline = otio.adapters.read_from_file(str(write_shot_otio(shot_dir)))
    (clip,) = list(timeline.tracks[0])
    assert clip.media_reference.rate == 24000 / 1001
    assert clip.duration().to_seconds() == pytest.approx(report["frames"] * 1001 / 24000, rel=1e-12)
    assert (clip.metadata["greenlight"]["seed"], clip.metadata["greenlight"]["prompt"]) == (11, "from the report")
    assert (shot_dir / "dolly.otio").is_file()


def test_refuses_incomplete_or_mixed_versions(downloaded, tmp_path):
    shot_dir, _ = downloaded
    (shot_dir / "v002" / "frame_00003.png").unlink()
    with pytest.raises(InvalidArgumentError, match="frame_00003.png is missing"):
        read_version(shot_dir / "v002")
    with pytest.raises(InvalidArgumentError, match="no report.json"):
        read_version(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(shot_dir / "v001", other)
    report = json.loads((other / "report.json").read_text())
    report["tags"]["shot"] = "pan"
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(InvalidArgumentError, match="different shots"):
        write_otio([shot_dir / "v001", other], tmp_path / "x.otio")
    report["state"] = "failed"
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(InvalidArgumentError, match="'failed'"):
        read_version(other)
    with pytest.raises(InvalidArgumentError, match="no vNNN folders"):
        write_shot_otio(tmp_path / "nothing-here")


def test_rewriting_keeps_seed_and_prompt_of_earlier_versions(downloaded):
    """`submit --watch --otio` passes only the new version's settings; the
    earlier export's values must survive, and reports carry their own."""
    shot_dir, settings = downloaded
    path = write_shot_otio(shot_dir, generations={1: settings[1]})
    path = write_shot_otio(shot_dir, generations={2: settings[2]})
    timeline = otio.adapters.read_from_file(str(path))
    clips = [list(t)[0] for t in timeline.tracks]
    assert [(c.metadata["greenlight"]["seed"], c.metadata["greenlight"]["prompt"]) for c in clips] == [
        (7, "robot waving, take 1"), (str(2 ** 64 - 5), "robot waving, take 2")]
    # a fresh export reads the settings the bridge recorded in each report
    fresh = write_otio(find_versions(shot_dir), shot_dir / "fresh.otio")
    timeline = otio.adapters.read_from_file(str(fresh))
    clips = [list(t)[0] for t in timeline.tracks]
    assert [c.metadata["greenlight"]["seed"] for c in clips] == [7, str(2 ** 64 - 5)]
    # and where a report has none (older bridge), it says so (None), never guesses
    import json

    for v in find_versions(shot_dir):
        report = json.loads((v / "report.json").read_text())
        report.pop("generation", None)
        (v / "report.json").write_text(json.dumps(report))
    bare = write_otio(find_versions(shot_dir), shot_dir / "bare.otio")
    clip = list(otio.adapters.read_from_file(str(bare)).tracks[0])[0]
    assert clip.metadata["greenlight"]["seed"] is None and clip.metadata["greenlight"]["prompt"] is None
