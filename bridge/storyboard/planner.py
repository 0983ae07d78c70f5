"""Screenplay -> shot list: documented, deterministic rules, or a plug-in planner.

``rule_shots(script)`` applies the rules below (also in docs/storyboard.md);
``plan_shots(script, planner=name)`` hands the script and that draft to a
planner a studio installed under the entry-point group
``greenlight.shot_planners`` (a callable ``(script, draft) -> ShotList``,
e.g. one that asks its own language model). None is shipped or required.

Rules, per scene:

1. The first action paragraph gives the establishing shot: wide; static
   inside (INT), a slow pan outside (EXT). A scene that opens on dialogue
   gets a static wide first, timed at the minimum.
2. Every later action paragraph is one shot; the first row of
   ``ACTION_CUES`` whose words it contains picks size and move; with no cue,
   a paragraph naming no character is a static wide, else a static medium.
3. Consecutive dialogue (no action between) is an exchange; consecutive
   lines of one speaker are one turn. With two or more speakers each turn is
   an over-the-shoulder on the speaker past the other speaker of the
   previous (or, for the first turn, the next) turn; a parenthetical in
   ``INTIMATE`` makes it a close-up. A lone speaker gets a close-up, pushed
   in (dolly-in) past ``LONG_SPEECH_WORDS`` words. An off-screen turn (V.O.,
   O.S.) is a close-up of the listener; with no listener it is added to the
   previous shot's time.
4. Characters in frame: the script's characters named in the paragraph
   (whole words, any case), in the order named; a paragraph that names none
   but has a pronoun (he, she, they...) means the last character named in the
   scene.
5. Duration: action words / ``ACTION_WORDS_PER_S``, spoken words /
   ``DIALOGUE_WORDS_PER_S`` (parentheticals not counted), at least
   ``MIN_SHOT_S``, rounded to 0.01 s.
6. Shot ids: ``S<scene:02>_<10 x n:03>`` (S02_030 is scene 2's third shot),
   leaving room for inserts cut in later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, cast

from ..errors import InvalidArgumentError
from ..shot.moves import CameraMove, ShotSize
from .screenplay import Action, Dialogue, Scene, Screenplay
from .shots import PlannedShot, SceneShots, ShotList

__all__ = [
    "ACTION_WORDS_PER_S", "DIALOGUE_WORDS_PER_S", "MIN_SHOT_S", "ACTION_CUES", "INTIMATE", "PLANNER_GROUP",
    "rule_shots", "plan_shots", "available_planners", "load_planner", "duration_for", "ShotPlanner",
]

ACTION_WORDS_PER_S = 3.0      # about a page a minute
DIALOGUE_WORDS_PER_S = 2.5    # 150 spoken words a minute
MIN_SHOT_S = 2.0
LONG_SPEECH_WORDS = 20

# (cue words or phrases, size, move): first matching row wins (rule 2)
ACTION_CUES: tuple[tuple[tuple[str, ...], ShotSize, CameraMove], ...] = (
    (("approaches", "leans in", "moves closer", "steps toward", "steps towards", "closes in"),
     ShotSize.MEDIUM, CameraMove.DOLLY_IN),
    (("backs away", "retreats", "steps back", "recoils", "pulls away"), ShotSize.MEDIUM, CameraMove.DOLLY_OUT),
    (("walks", "runs", "crosses", "enters", "exits", "paces", "hurries", "strides", "follows"),
     ShotSize.MEDIUM, CameraMove.TRUCK),
    (("climbs", "rises", "descends", "stands up", "gets up", "lifts"), ShotSize.MEDIUM, CameraMove.CRANE),
    (("looks up", "looms", "towers", "looks down"), ShotSize.MEDIUM, CameraMove.TILT),
    (("circles", "spins", "surrounds", "around"), ShotSize.MEDIUM, CameraMove.ORBIT),
    (("turns", "looks", "glances", "watches", "scans", "searches"), ShotSize.MEDIUM, CameraMove.PAN),
    (("realises", "realizes", "freezes", "stares", "gasps", "recognises", "recognizes"),
     ShotSize.CLOSE_UP, CameraMove.ZOOM),
    (("map", "letter", "photo", "photograph", "key", "keys", "phone", "note", "ring", "wristwatch", "clock",
      "envelope", "button", "lock", "screen", "knife", "gun", "book", "cup"), ShotSize.INSERT, CameraMove.STATIC),
)
INTIMATE = ("quietly", "softly", "whispering", "whispers", "whisper", "tearful", "in tears", "crying", "gently",
            "barely audible")
PRONOUNS = ("he", "she", "they", "him", "her", "them", "his", "hers", "their")

SIZE_PHRASES = {
    ShotSize.WIDE: "Wide shot", ShotSize.MEDIUM: "Medium shot", ShotSize.CLOSE_UP: "Close-up",
    ShotSize.OVER_THE_SHOULDER: "Over-the-shoulder shot", ShotSize.INSERT: "Insert shot",
}
PLANNER_GROUP = "greenlight.shot_planners"

ShotPlanner = Callable[[Screenplay, ShotList], ShotList]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _has(text_words: Sequence[str], cue: str) -> bool:
    cue_words = cue.split()
    n = len(cue_words)
    return any(list(text_words[i:i + n]) == cue_words for i in range(len(text_words) - n + 1))


def duration_for(words: int, rate_words_per_s: float) -> float:
    return round(max(MIN_SHOT_S, words / rate_words_per_s), 2)


def _named(text: str, cast: Sequence[str]) -> list[str]:
    found = []
    for name in cast:
        m = re.search(r"(?<![A-Za-z0-9'])" + re.escape(name) + r"(?![A-Za-z0-9'])", text, re.I)
        if m:
            found.append((m.start(), name))
    return [name for _, name in sorted(found)]


def _place(scene: Scene) -> str:
    h = scene.heading
    where = {"INT": "interior", "EXT": "exterior", "INT/EXT": "interior and exterior"}.get(h.setting, "")
    parts = [p for p in (f"{where} {h.location.lower()}".strip(), h.time_of_day.lower()) if p]
    return ", ".join(parts)


class _SceneRules:
    def __init__(self, scene: Scene, cast: Sequence[str]):
        self.scene = scene
        self.cast = cast
        self.shots: list[PlannedShot] = []
        self.last_named = ""
        self.characters: dict[str, None] = {}

    def _id(self) -> str:
        return f"S{self.scene.number:02d}_{10 * (len(self.shots) + 1):03d}"

    def _add(self, size, move, duration, characters, prompt, line, *, action="", speaker="", dialogue=""):
        for c in characters:   # the scene's cast: whoever is ever in frame (an off-screen voice is not)
            self.characters.setdefault(c)
        self.shots.append(PlannedShot(
            id=self._id(), size=size, move=move, duration_s=duration, characters=tuple(characters),
            prompt=prompt, action=action, speaker=speaker, dialogue=dialogue, line=line))

    def in_frame(self, text: str) -> list[str]:
        named = _named(text, self.cast)
        if named:
            self.last_named = named[-1]
        elif self.last_named and any(w in PRONOUNS for w in _words(text)):
            named = [self.last_named]
        return named

    def action(self, a: Action) -> None:
        words = _words(a.text)
        chars = self.in_frame(a.text)
        if not self.shots:
            move = CameraMove.STATIC if self.scene.heading.interior else CameraMove.PAN
            size = ShotSize.WIDE
        else:
            size, move = (ShotSize.WIDE if not chars else ShotSize.MEDIUM), CameraMove.STATIC
            for cues, cue_size, cue_move in ACTION_CUES:
                if any(_has(words, c) for c in cues):
                    size, move = cue_size, cue_move
                    break
            if not chars and size in (ShotSize.MEDIUM, ShotSize.CLOSE_UP):
                size = ShotSize.WIDE   # nobody to frame closer: the move plays on the set
        self._add(size, move, duration_for(len(words), ACTION_WORDS_PER_S), chars,
                  f"{SIZE_PHRASES[size]}, {_place(self.scene)}. {a.text}", a.line, action=a.text)

    def exchange(self, lines: Sequence[Dialogue]) -> None:
        turns: list[list[Dialogue]] = []
        for d in lines:
            if turns and turns[-1][0].character == d.character and turns[-1][0].off_screen == d.off_screen:
                turns[-1].append(d)
            else:
                turns.append([d])
        speakers = list(dict.fromkeys(t[0].character for t in turns))
        if not self.shots:   # opens on dialogue: a short establishing wide first
            self._add(ShotSize.WIDE, CameraMove.STATIC, MIN_SHOT_S,
                      [s for s in speakers if not any(t[0].off_screen for t in turns if t[0].character == s)],
                      f"{SIZE_PHRASES[ShotSize.WIDE]}, {_place(self.scene)}.", lines[0].line)
        for i, turn in enumerate(turns):
            first = turn[0]
            speaker = first.character
            text = " ".join(d.text for d in turn)
            words = sum(len(_words(d.text)) for d in turn)
            duration = duration_for(words, DIALOGUE_WORDS_PER_S)
            others = [t[0].character for t in (turns[i - 1:i] + turns[i + 1:i + 2])
                      if t[0].character != speaker and not t[0].off_screen]   # an off-screen voice has no shoulder
            listener = others[0] if others else ""
            paren = first.parenthetical
            self.last_named = speaker
            if first.off_screen:
                if listener:
                    self._add(ShotSize.CLOSE_UP, CameraMove.STATIC, duration, [listener],
                              f"{SIZE_PHRASES[ShotSize.CLOSE_UP]}, {_place(self.scene)}. {listener} listens to "
                              f"{speaker}, who is heard off screen.", first.line, speaker=speaker, dialogue=text)
                else:
                    prev = self.shots[-1]
                    self.shots[-1] = PlannedShot(**{**prev.__dict__, "duration_s": round(prev.duration_s + duration, 2),
                                                    "dialogue": (prev.dialogue + " " + text).strip(),
                                                    "speaker": prev.speaker or speaker})
                continue
            how = f", {paren}" if paren else ""
            if listener:
                intimate = any(_has(_words(paren), c) for c in INTIMATE)
                size = ShotSize.CLOSE_UP if intimate else ShotSize.OVER_THE_SHOULDER
                chars = [speaker] if intimate else [speaker, listener]
                self._add(size, CameraMove.STATIC, duration, chars,
                          f"{SIZE_PHRASES[size]}, {_place(self.scene)}. {speaker} talks to {listener}{how}.",
                          first.line, speaker=speaker, dialogue=text)
            else:
                move = CameraMove.DOLLY_IN if words > LONG_SPEECH_WORDS else CameraMove.STATIC
                self._add(ShotSize.CLOSE_UP, move, duration, [speaker],
                          f"{SIZE_PHRASES[ShotSize.CLOSE_UP]}, {_place(self.scene)}. {speaker} talks{how}.",
                          first.line, speaker=speaker, dialogue=text)

    def run(self) -> SceneShots:
        pending: list[Dialogue] = []
        for e in self.scene.elements:
            if isinstance(e, Dialogue):
                pending.append(e)
                continue
            if pending:
                self.exchange(pending)
                pending = []
            if isinstance(e, Action):
                self.action(e)
        if pending:
            self.exchange(pending)
        h = self.scene.heading
        if not self.shots:   # a heading with nothing under it still gets its establishing wide
            self._add(ShotSize.WIDE, CameraMove.STATIC, MIN_SHOT_S, [],
                      f"{SIZE_PHRASES[ShotSize.WIDE]}, {_place(self.scene)}.", h.line)
        chars = tuple(c for c in self.cast if c in self.characters)
        return SceneShots(number=self.scene.number, heading=h.text, setting=h.setting, location=h.location,
                          time_of_day=h.time_of_day, line=h.line, characters=chars, shots=tuple(self.shots))


def rule_shots(script: Screenplay) -> ShotList:
    """The shot list the documented rules derive from ``script`` (deterministic)."""
    cast = script.characters
    return ShotList(tuple(_SceneRules(scene, cast).run() for scene in script.scenes), title=script.title)


def available_planners() -> list[str]:
    return sorted({ep.name for ep in metadata.entry_points(group=PLANNER_GROUP)})


def load_planner(name: str) -> ShotPlanner:
    """The planner installed under ``name`` in ``greenlight.shot_planners``."""
    found = [ep for ep in metadata.entry_points(group=PLANNER_GROUP) if ep.name == name]
    if not found:
        names = available_planners()
        raise InvalidArgumentError(
            f"no shot planner {name!r} is installed (entry-point group {PLANNER_GROUP}); "
            + (f"installed: {', '.join(names)}" if names else "none is installed; leave the planner unset to use "
               "the built-in rules"), field="planner")
    planner: Any = found[0].load()
    if not callable(planner):
        raise InvalidArgumentError(f"shot planner {name!r} ({found[0].value}) is not callable", field="planner")
    return cast(ShotPlanner, planner)


def plan_shots(script: Screenplay, *, planner: str | None = None) -> ShotList:
    """The rule-based shot list, or what the named planner makes of it."""
    draft = rule_shots(script)
    if planner is None:
        return draft
    result = load_planner(planner)(script, draft)
    if not isinstance(result, ShotList):
        raise InvalidArgumentError(f"shot planner {planner!r} returned {type(result).__name__}, not a ShotList",
                                   field="planner")
    # rebuilt through the dict form so every rule of the model is checked on what the plug-in made
    return ShotList.from_dict(result.to_dict())
