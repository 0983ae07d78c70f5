"""Screenplays in (bridge.storyboard.screenplay): Fountain and Final Draft
parsed through screenplay-tools, with the line numbers, joined FDX runs and
heading fields the wrapper adds, and errors that name the line."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bridge.errors import GreenlightError, InvalidArgumentError
from bridge.storyboard.screenplay import (
    Action,
    Dialogue,
    ScreenplayError,
    Transition,
    load_screenplay,
    parse_fdx,
    parse_fountain,
    parse_heading,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bridge" / "storyboard" / "samples" / "sample.fountain"
FDX = REPO / "tests" / "fixtures" / "storyboard" / "sample.fdx"


def test_the_chosen_library_is_installed_and_mit_licensed():
    meta = metadata.metadata("screenplay-tools")
    assert meta["Version"] == "0.0.10"
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier")


def test_fountain_sample_scenes_headings_and_elements():
    script = load_screenplay(SAMPLE)
    assert script.format == "fountain" and script.source == "sample.fountain"
    assert script.title == "The Lighthouse Map"
    assert [t.text for t in script.opening] == ["FADE IN:"]   # the library reads it as a heading; we do not
    assert [(s.heading.setting, s.heading.location, s.heading.time_of_day) for s in script.scenes] == [
        ("EXT", "HARBOUR PIER", "DAWN"), ("INT", "LIGHTHOUSE KITCHEN", "NIGHT"), ("EXT", "CLIFF PATH", "NIGHT")]
    assert script.characters == ("MAYA", "TOM")
    kitchen = script.scenes[1]
    kinds = [type(e).__name__ for e in kitchen.elements]
    assert kinds == ["Action", "Action", "Dialogue", "Dialogue", "Dialogue", "Dialogue", "Transition"]
    tom = kitchen.elements[3]
    assert isinstance(tom, Dialogue)
    assert (tom.character, tom.parenthetical, tom.text) == ("TOM", "quietly",
                                                           "I told you it was safe. That's not the same thing.")
    assert kitchen.speakers == ("MAYA", "TOM")
    last = script.scenes[2].elements[-1]
    assert isinstance(last, Transition) and last.text == "FADE OUT."


def test_fountain_line_numbers_point_at_the_source_line():
    script = load_screenplay(SAMPLE)
    lines = SAMPLE.read_text().splitlines()
    checked = 0
    for scene in script.scenes:
        assert lines[scene.heading.line - 1] == scene.heading.text
        for e in scene.elements:
            first_words = " ".join(e.text.split()[:3])
            assert first_words in lines[e.line - 1], (e, lines[e.line - 1])
            checked += 1
    assert checked == 14


def test_fountain_action_paragraphs_stay_apart_and_keep_their_lines():
    text = "INT. ROOM - DAY\n\nFirst paragraph,\nstill the first.\n\n\nSecond one.\n"
    scene = parse_fountain(text).scenes[0]
    assert scene.elements == (Action("First paragraph, still the first.", 3), Action("Second one.", 7))


def test_fdx_fixture_joins_styled_runs_and_keeps_paragraph_lines():
    script = load_screenplay(FDX)
    assert script.format == "fdx"
    assert [s.heading.text for s in script.scenes] == ["INT. BOATHOUSE - DAY", "EXT. SLIPWAY - CONTINUOUS"]
    first = script.scenes[0].elements
    assert first[0] == Action("JONAH (40s) sits on an upturned hull, sanding an oar.", 8)   # three <Text> runs
    assert first[1] == Dialogue("ELSA", "Is the tide in yet?", 14, "", "O.S.") and first[1].off_screen
    assert first[2] == Dialogue("JONAH", "Not for an hour.", 23, "without looking up", "")
    assert first[3] == Transition("CUT TO:", 26)
    slipway = script.scenes[1].elements
    assert slipway[1] == Action("CLOSE ON THE WATER", 35)                # a "Shot" paragraph is not a heading
    assert [(d.character, d.text, d.line) for d in slipway[2:]] == [     # both sides of a <DualDialogue>
        ("ELSA", "Now!", 43), ("JONAH", "Now!", 49)]
    lines = FDX.read_text().splitlines()
    for scene in script.scenes:
        for line in [scene.heading.line] + [e.line for e in scene.elements]:
            assert "<Paragraph " in lines[line - 1]
    assert script.characters == ("JONAH", "ELSA")


@pytest.mark.parametrize("text, line, words", [
    ("Title: X\n\nSomething happens.\n\nINT. ROOM - DAY\n", 3, "action before the first scene heading"),
    ("INT. ROOM - DAY\n\nA chair.\n\nEXT. - NIGHT\n\nRain.\n", 5, "names no location"),
    ("INT. ROOM - DAY\n\nA chair. /* cut this\nand this\n\nMore.\n", 3, "never closed"),
    ("Just some words.\n", 1, "before the first scene heading"),
    ("\n\n", 1, "no scene heading found"),
])
def test_malformed_fountain_names_the_line(text, line, words):
    with pytest.raises(ScreenplayError) as err:
        parse_fountain(text, source="bad.fountain")
    assert err.value.line == line
    assert str(err.value).startswith(f"bad.fountain, line {line}: ")
    assert words in str(err.value)
    assert isinstance(err.value, InvalidArgumentError) and err.value.details()["line"] == str(line)


def _fdx(body: str) -> str:
    return f'<?xml version="1.0"?>\n<FinalDraft>\n<Content>\n{body}\n</Content>\n</FinalDraft>\n'


@pytest.mark.parametrize("text, line, words", [
    (_fdx('<Paragraph Type="Scene Heading"><Text>INT. A - DAY</Text></Paragraph>\n'
          '<Paragraph Type="Action"><Text>Oops</Paragraph>'), 5, "not well-formed XML"),
    ('<?xml version="1.0"?>\n<Screenplay/>\n', 2, "not <FinalDraft>"),
    (_fdx('<Paragraph Type="Scene Heading"><Text>INT. A - DAY</Text></Paragraph>\n'
          '<Paragraph Type="Dialogue"><Text>Who said this?</Text></Paragraph>'), 5, "without a character cue"),
    (_fdx('<Paragraph Type="Scene Heading"><Text>INT. A - DAY</Text></Paragraph>\n\n'
          '<Paragraph Type="Character"><Text> </Text></Paragraph>'), 6, "no name"),
    (_fdx(""), 1, "script is empty"),
])
def test_malformed_fdx_names_the_line(text, line, words):
    with pytest.raises(ScreenplayError) as err:
        parse_fdx(text, source="bad.fdx")
    assert (err.value.line, err.value.source) == (line, "bad.fdx")
    assert str(err.value).startswith(f"bad.fdx, line {line}: ") and words in str(err.value)


@pytest.mark.parametrize("text, setting, location, tod", [
    ("INT. KITCHEN - NIGHT", "INT", "KITCHEN", "NIGHT"),
    ("ext. pier - dawn", "EXT", "pier", "DAWN"),
    ("INT./EXT. CAR - MOVING - DAY", "INT/EXT", "CAR - MOVING", "DAY"),
    ("I/E TRAIN", "INT/EXT", "TRAIN", ""),
    ("EST. CITY SKYLINE -- DUSK", "EXT", "CITY SKYLINE", "DUSK"),
])
def test_headings_split_into_setting_location_and_time(text, setting, location, tod):
    h = parse_heading(text, 1)
    assert (h.setting, h.location, h.time_of_day) == (setting, location, tod)
    assert h.interior == (setting != "EXT")


def test_forced_heading_without_prefix_and_scene_numbers():
    script = parse_fountain(".FLASHBACK #7#\n\nA memory.\n")
    h = script.scenes[0].heading
    assert (h.setting, h.location, h.scene_number, h.line) == ("", "FLASHBACK", "7", 1)


def test_unknown_suffix_and_non_utf8_are_refused(tmp_path):
    doc = tmp_path / "script.docx"
    doc.write_text("x")
    with pytest.raises(InvalidArgumentError, match=r"unknown screenplay format '\.docx'.*\.fdx"):
        load_screenplay(doc)
    bad = tmp_path / "bad.fountain"
    bad.write_bytes(b"INT. ROOM - DAY\n\n\xff\xfe\n")
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        load_screenplay(bad)


def test_a_missing_library_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "screenplay_tools", None)   # import fails as if not installed
    with pytest.raises(GreenlightError, match=r"pip install 'greenlight\[storyboard\]'"):
        parse_fountain("INT. ROOM - DAY\n")


def test_storyboard_and_moves_import_without_the_library_or_an_engine():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('screenplay_tools', 'torch', 'bpy', 'grpc', 'unreal'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import bridge.storyboard.screenplay, bridge.storyboard.shots, bridge.storyboard.planner\n"
        "import bridge.storyboard.blocking, bridge.shot.moves\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
