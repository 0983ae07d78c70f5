"""The shot list (bridge.storyboard.shots, .planner): CSV/JSON round trips
(property-tested), the rule-based list from the sample script (deterministic,
with the documented rules and rates), edits refused with the row named, and
the plug-in planner hook through a fake distribution on sys.path."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import InvalidArgumentError
from bridge.shot.moves import CameraMove, Ease, ShotSize
from bridge.storyboard import planner as planner_mod
from bridge.storyboard.planner import (
    ACTION_WORDS_PER_S,
    DIALOGUE_WORDS_PER_S,
    MIN_SHOT_S,
    PLANNER_GROUP,
    available_planners,
    plan_shots,
    rule_shots,
)
from bridge.storyboard.screenplay import load_screenplay
from bridge.storyboard.shots import CSV_COLUMNS, PlannedShot, SceneShots, ShotList, ShotListError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bridge" / "storyboard" / "samples" / "sample.fountain"
FDX = REPO / "tests" / "fixtures" / "storyboard" / "sample.fdx"

# ---- property tests: CSV and JSON round trips -----------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_name = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters=" '-."),
                min_size=1, max_size=12).map(str.strip).filter(bool)
_id_part = st.text("ABCXYZabc0123456789", min_size=1, max_size=6)
_seconds = st.floats(min_value=0.01, max_value=3600, allow_nan=False, allow_infinity=False)
_amount = st.none() | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def shot_lists(draw):
    scenes = []
    used: set[str] = set()
    for number in draw(st.lists(st.integers(1, 999), min_size=1, max_size=4, unique=True)):
        cast = tuple(draw(st.lists(_name, min_size=0, max_size=4, unique=True)))
        shots = []
        for _ in range(draw(st.integers(1, 4))):
            sid = draw(_id_part.filter(lambda s: s not in used))
            used.add(sid)
            size = draw(st.sampled_from(list(ShotSize)))
            if size is ShotSize.OVER_THE_SHOULDER and len(cast) < 2:
                size = ShotSize.WIDE
            chars = tuple(draw(st.permutations(cast))[:draw(st.integers(0, len(cast)))])
            if size is ShotSize.OVER_THE_SHOULDER and len(chars) < 2:
                chars = cast[:2]
            shots.append(PlannedShot(
                id=sid, size=size, move=draw(st.sampled_from(list(CameraMove))), duration_s=draw(_seconds),
                characters=chars, prompt=draw(_text), action=draw(_text),
                speaker=draw(st.sampled_from(("",) + cast)), dialogue=draw(_text), line=draw(st.integers(0, 10**6)),
                move_amount=draw(_amount), ease=draw(st.sampled_from(list(Ease)))))
        scenes.append(SceneShots(number, draw(_text), draw(st.sampled_from(("INT", "EXT", "INT/EXT", ""))),
                                 draw(_text), draw(_text), draw(st.integers(0, 10**6)), cast, tuple(shots)))
    return ShotList(tuple(scenes), title=draw(_text))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shot_lists())
def test_csv_round_trip_is_exact(shot_list):
    text = shot_list.to_csv()
    assert ShotList.from_csv(text) == shot_list
    assert ShotList.from_csv(text).to_csv() == text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shot_lists())
def test_json_round_trip_is_exact(shot_list):
    text = shot_list.to_json()
    assert ShotList.from_json(text) == shot_list
    assert ShotList.from_json(text).to_json() == text


# ---- the sample script's shot list ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    return load_screenplay(SAMPLE)


@pytest.fixture(scope="module")
def sample_shots(sample):
    return rule_shots(sample)


def test_sample_shot_list_is_deterministic_across_runs_and_processes(sample_shots):
    again = rule_shots(load_screenplay(SAMPLE)).to_json()
    assert again == sample_shots.to_json()
    code = ("from bridge.storyboard.screenplay import load_screenplay\n"
            "from bridge.storyboard.planner import rule_shots\n"
            f"print(rule_shots(load_screenplay({str(SAMPLE)!r})).to_json(), end='')\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == sample_shots.to_json()


def test_sample_shot_list_shape(sample_shots):
    assert len(sample_shots.scenes) == 3
    assert 8 <= len(sample_shots.shots) <= 12
    assert [s.shots[0].id for s in sample_shots.scenes] == ["S01_010", "S02_010", "S03_010"]
    assert sample_shots.title == "The Lighthouse Map"


def test_establishing_headings_open_on_a_wide(sample_shots):
    for scene in sample_shots.scenes:
        first = scene.shots[0]
        assert first.size is ShotSize.WIDE
        assert first.move is (CameraMove.PAN if scene.setting == "EXT" else CameraMove.STATIC)
    assert sample_shots.scenes[0].setting == "EXT"


def test_the_kitchen_exchange_gets_over_the_shoulder_and_close_up_coverage(sample_shots):
    kitchen = sample_shots.scenes[1]
    spoken = [s for s in kitchen.shots if s.dialogue]
    assert [s.speaker for s in spoken] == ["MAYA", "TOM", "MAYA", "TOM"]
    assert all(s.size in (ShotSize.OVER_THE_SHOULDER, ShotSize.CLOSE_UP) for s in spoken)
    ots = [s for s in spoken if s.size is ShotSize.OVER_THE_SHOULDER]
    assert ots and all(s.characters[0] == s.speaker and len(s.characters) == 2 for s in ots)
    assert {s.characters for s in ots} == {("MAYA", "TOM"), ("TOM", "MAYA")}
    quiet = next(s for s in spoken if "safe" in s.dialogue)
    assert quiet.size is ShotSize.CLOSE_UP and quiet.characters == ("TOM",)   # "(quietly)" is intimate


def test_durations_follow_the_documented_rates(sample_shots):
    import re

    def words(text):
        return len(re.findall(r"[a-z0-9']+", text.lower()))

    for shot in sample_shots.shots:
        if shot.dialogue:
            expected = max(MIN_SHOT_S, words(shot.dialogue) / DIALOGUE_WORDS_PER_S)
        else:
            expected = max(MIN_SHOT_S, words(shot.action) / ACTION_WORDS_PER_S)
        assert shot.duration_s == round(expected, 2), shot
    tom = next(s for s in sample_shots.shots if s.dialogue.startswith("I told you"))
    assert tom.duration_s == 4.4                        # 11 words at 2.5 a second
    assert sample_shots.shots[0].duration_s == 5.33     # 16 action words at 3 a second


def test_action_cues_characters_and_prompts(sample_shots):
    by_id = {s.id: s for s in sample_shots.shots}
    assert (by_id["S01_020"].size, by_id["S01_020"].characters) == (ShotSize.INSERT, ("MAYA",))  # "She ... map"
    assert (by_id["S02_020"].size, by_id["S02_020"].move) == (ShotSize.MEDIUM, CameraMove.TRUCK)  # "enters"
    assert (by_id["S03_020"].move, by_id["S03_020"].characters) == (CameraMove.PAN, ("MAYA",))  # "turns"
    assert by_id["S03_030"].size is ShotSize.CLOSE_UP and by_id["S03_030"].characters == ("MAYA",)  # lone speaker
    assert by_id["S02_010"].prompt.startswith("Wide shot, interior lighthouse kitchen, night. A cramped kitchen")
    assert sample_shots.scenes[1].characters == ("MAYA", "TOM")
    for shot in sample_shots.shots:
        assert shot.line > 0 and shot.prompt


def test_fdx_off_screen_voice_cuts_to_the_listener():
    shots = rule_shots(load_screenplay(FDX))
    heard = next(s for s in shots.shots if s.speaker == "ELSA")
    assert heard.size is ShotSize.CLOSE_UP and heard.characters == ("JONAH",)
    assert all("ELSA" not in s.characters for s in shots.scenes[0].shots)
    assert shots.scenes[0].characters == ("JONAH",)   # a voice off screen gets no mark in the scene


def test_the_docs_state_the_vocabulary_and_the_rates():
    doc = (REPO / "docs" / "storyboard.md").read_text()
    for value in [m.value for m in ShotSize] + [m.value for m in CameraMove] + [m.value for m in Ease]:
        assert f"| {value} |" in doc or f"`{value}`" in doc, value
    assert f"{ACTION_WORDS_PER_S} words a second" in doc and f"{DIALOGUE_WORDS_PER_S} spoken words" in doc
    assert f"at least {MIN_SHOT_S} s" in doc
    for cues, _, _ in planner_mod.ACTION_CUES:
        assert cues[0] in doc


# ---- edited files refused with the place named ---------------------------------------------------------------
def _rows(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def _csv(rows):
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def test_csv_edits_that_break_a_rule_name_the_row(sample_shots):
    rows = _rows(sample_shots.to_csv())
    size_col = CSV_COLUMNS.index("size")
    assert rows[3][size_col] == "wide"   # S02_010, the kitchen's establishing shot (CSV row 4)
    assert ShotList.from_csv(_csv(rows)) == sample_shots
    rows[3][size_col] = "extreme-wide"
    with pytest.raises(ShotListError, match=r"CSV row 4: size 'extreme-wide' is not one of wide, medium"):
        ShotList.from_csv(_csv(rows))
    rows = _rows(sample_shots.to_csv())
    with pytest.raises(ShotListError, match=r"scene 2 appears again after other scenes"):
        ShotList.from_csv(_csv(rows[:1] + rows[3:5] + rows[1:3] + rows[5:]))   # a scene's rows split apart
    rows[2][CSV_COLUMNS.index("location")] = "SOMEWHERE ELSE"
    with pytest.raises(ShotListError, match=r"CSV row 3: scene 1's location differ from its first row"):
        ShotList.from_csv(_csv(rows))
    with pytest.raises(ShotListError, match="header"):
        ShotList.from_csv("scene,shot\r\n1,a\r\n")


def test_model_rules_refuse_bad_shots():
    with pytest.raises(ShotListError, match="over-the-shoulder shot needs two characters"):
        PlannedShot("a", ShotSize.OVER_THE_SHOULDER, CameraMove.STATIC, 2.0, ("MAYA",))
    with pytest.raises(ShotListError, match="duration_s"):
        PlannedShot("a", ShotSize.WIDE, CameraMove.STATIC, float("nan"))
    with pytest.raises(ShotListError, match="shot id"):
        PlannedShot("my shot", ShotSize.WIDE, CameraMove.STATIC, 1.0)
    shot = PlannedShot("a", ShotSize.WIDE, CameraMove.STATIC, 1.0, ("ZED",))
    with pytest.raises(ShotListError, match=r"\['ZED'\] not among scene 1's characters"):
        SceneShots(1, "INT. A - DAY", "INT", "A", "DAY", 1, ("MAYA",), (shot,))
    plain = PlannedShot("a", ShotSize.WIDE, CameraMove.STATIC, 1.0)
    doc = json.loads(ShotList((SceneShots(1, "h", "INT", "A", "", 1, (), (plain,)),)).to_json())
    doc["scenes"][0]["shots"][0]["move"] = "whip-pan"
    with pytest.raises(ShotListError, match=r"scenes\[0\]\.shots\[0\]: move 'whip-pan' is not one of static, pan"):
        ShotList.from_dict(doc)


# ---- the planner hook ----------------------------------------------------------------------------------------
@pytest.fixture
def fake_planner_dist(tmp_path, monkeypatch):
    """A FAKE distribution, written for this test: a dist-info folder and a
    module on sys.path that register one planner under
    greenlight.shot_planners, found by the real importlib.metadata lookup."""
    (tmp_path / "fake_studio_planner.py").write_text(textwrap.dedent("""
        from dataclasses import replace

        def plan(script, draft):
            # a studio's planner: every shot a close-up, titles marked
            scenes = tuple(replace(s, shots=tuple(replace(sh, size=type(sh.size)("close-up"),
                           characters=sh.characters[:1]) for sh in s.shots)) for s in draft.scenes)
            return replace(draft, scenes=scenes, title="studio: " + draft.title)

        def broken(script, draft):
            return "not a shot list"
    """))
    dist = tmp_path / "fake_studio_planner-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-studio-planner\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{PLANNER_GROUP}]\nstudio = fake_studio_planner:plan\nbroken = fake_studio_planner:broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("fake_studio_planner", None)


def test_a_registered_planner_is_found_and_its_result_checked(fake_planner_dist, sample):
    assert {"studio", "broken"} <= set(available_planners())
    planned = plan_shots(sample, planner="studio")
    assert planned.title == "studio: The Lighthouse Map"
    assert {s.size for s in planned.shots} == {ShotSize.CLOSE_UP}
    assert [s.id for s in planned.shots] == [s.id for s in rule_shots(sample).shots]
    with pytest.raises(InvalidArgumentError, match="returned str, not a ShotList"):
        plan_shots(sample, planner="broken")


def test_an_unknown_planner_lists_what_is_installed(monkeypatch, sample):
    with pytest.raises(InvalidArgumentError, match="no shot planner 'gpt-director' is installed"):
        plan_shots(sample, planner="gpt-director")
    monkeypatch.setattr(planner_mod.metadata, "entry_points", lambda **kw: [])
    with pytest.raises(InvalidArgumentError, match="none is installed; leave the planner unset"):
        plan_shots(sample, planner="gpt-director")
    assert plan_shots(sample) == rule_shots(sample)   # no planner: the rules, no lookup needed
