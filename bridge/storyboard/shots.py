"""The shot list: scenes -> shots, typed, engine-free, editable as CSV and JSON.

A ``ShotList`` holds ``SceneShots`` (the scene's heading facts and its
characters) holding ``PlannedShot`` s. Sizes, moves and eases are the
vocabulary of ``bridge.shot.moves``. Both files round-trip exactly
(``from_csv(to_csv(x)) == x``, ``from_json(to_json(x)) == x``); an edited
file that breaks a rule is refused with ``ShotListError`` naming the row or
the field.

CSV: one row per shot, in order; the scene's columns repeat on each of its
rows (a scene's rows stay together), the title on every row. Lists
(``characters``, ``scene_characters``) are joined with ``;``. An empty
``move_amount`` means the move's default (``bridge.shot.moves.DEFAULT_AMOUNTS``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from ..errors import InvalidArgumentError
from ..shot.moves import CameraMove, Ease, ShotSize
from ..shot.tags import safe_tag

__all__ = ["PlannedShot", "SceneShots", "ShotList", "ShotListError", "SCHEMA", "CSV_COLUMNS"]

SCHEMA = "greenlight.shot_list/1"
SETTINGS = ("INT", "EXT", "INT/EXT", "")


class ShotListError(InvalidArgumentError):
    """A shot list (built, or read from CSV/JSON) breaks a rule; ``field`` says where."""


def _check_name(where: str, name: Any) -> None:
    if not isinstance(name, str) or not name or name != name.strip() or ";" in name \
            or any(ord(c) < 32 for c in name):
        raise ShotListError(f"{where}: character name {name!r} must be non-empty text without ';', "
                            "control characters or surrounding spaces", field=where)


def _check_text(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ShotListError(f"{where}: expected text, got {type(value).__name__}", field=where)
    if "\x00" in value:
        raise ShotListError(f"{where}: text may not contain NUL characters", field=where)


def _check_int(where: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ShotListError(f"{where}: expected a whole number >= {minimum}, got {value!r}", field=where)


@dataclass(frozen=True)
class PlannedShot:
    """One shot. ``characters``: who is in frame, the subject first (for an
    over-the-shoulder: the speaker, then the listener whose shoulder we look
    past). ``action`` / ``speaker`` + ``dialogue``: the script text the shot
    covers; ``line``: its line in the script. ``move_amount``: in the move's
    unit (``bridge.shot.moves.MOVE_UNITS``), None for the default."""

    id: str
    size: ShotSize
    move: CameraMove
    duration_s: float
    characters: tuple[str, ...] = ()
    prompt: str = ""
    action: str = ""
    speaker: str = ""
    dialogue: str = ""
    line: int = 0
    move_amount: float | None = None
    ease: Ease = Ease.IN_OUT

    def __post_init__(self):
        where = f"shot {self.id!r}"
        if not isinstance(self.id, str) or not self.id or safe_tag(self.id) != self.id:
            raise ShotListError(f"{where}: a shot id must be letters, digits, '.', '_' or '-' "
                                f"(at most 64, not starting or ending with '.', '_', '-')", field="id")
        for name, enum in (("size", ShotSize), ("move", CameraMove), ("ease", Ease)):
            value = getattr(self, name)
            if not isinstance(value, enum):
                raise ShotListError(f"{where}: {name} must be a {enum.__name__}, got {value!r}", field=name)
        d = self.duration_s
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d <= 0 or d > 3600:
            raise ShotListError(f"{where}: duration_s {d!r} must be a number of seconds above 0 and at most 3600",
                                field="duration_s")
        a = self.move_amount
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a)):
            raise ShotListError(f"{where}: move_amount {a!r} must be a finite number or empty", field="move_amount")
        if not isinstance(self.characters, tuple):
            raise ShotListError(f"{where}: characters must be a tuple of names", field="characters")
        for c in self.characters:
            _check_name(f"{where}.characters", c)
        if len(set(self.characters)) != len(self.characters):
            raise ShotListError(f"{where}: characters {list(self.characters)} name someone twice", field="characters")
        if self.speaker:
            _check_name(f"{where}.speaker", self.speaker)
        for name in ("prompt", "action", "speaker", "dialogue"):
            _check_text(f"{where}.{name}", getattr(self, name))
        _check_int(f"{where}.line", self.line, 0)
        if self.size is ShotSize.OVER_THE_SHOULDER and len(self.characters) < 2:
            raise ShotListError(f"{where}: an over-the-shoulder shot needs two characters (speaker; listener), "
                                f"got {list(self.characters)}", field="characters")


@dataclass(frozen=True)
class SceneShots:
    number: int
    heading: str
    setting: str
    location: str
    time_of_day: str
    line: int
    characters: tuple[str, ...]
    shots: tuple[PlannedShot, ...]

    def __post_init__(self):
        where = f"scene {self.number!r}"
        _check_int(f"{where}.number", self.number, 1)
        _check_int(f"{where}.line", self.line, 0)
        if self.setting not in SETTINGS:
            raise ShotListError(f"{where}: setting {self.setting!r} is not one of INT, EXT, INT/EXT or empty",
                                field="setting")
        for name in ("heading", "location", "time_of_day"):
            _check_text(f"{where}.{name}", getattr(self, name))
        if not isinstance(self.characters, tuple) or not isinstance(self.shots, tuple):
            raise ShotListError(f"{where}: characters and shots must be tuples", field="shots")
        for c in self.characters:
            _check_name(f"{where}.characters", c)
        if len(set(self.characters)) != len(self.characters):
            raise ShotListError(f"{where}: characters {list(self.characters)} name someone twice", field="characters")
        if not self.shots:
            raise ShotListError(f"{where}: a scene needs at least one shot", field="shots")
        for shot in self.shots:
            missing = [c for c in shot.characters if c not in self.characters]
            if missing:
                raise ShotListError(f"shot {shot.id!r}: {missing} not among scene {self.number}'s characters "
                                    f"{list(self.characters)}", field="characters")

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.shots)


@dataclass(frozen=True)
class ShotList:
    scenes: tuple[SceneShots, ...]
    title: str = ""

    def __post_init__(self):
        _check_text("title", self.title)
        if not isinstance(self.scenes, tuple) or not self.scenes:
            raise ShotListError("a shot list needs at least one scene", field="scenes")
        numbers = [s.number for s in self.scenes]
        if len(set(numbers)) != len(numbers):
            raise ShotListError(f"scene numbers {numbers} repeat", field="scenes")
        ids = [shot.id for s in self.scenes for shot in s.shots]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ShotListError(f"shot ids {dup} are used more than once", field="id")

    @property
    def shots(self) -> tuple[PlannedShot, ...]:
        return tuple(shot for s in self.scenes for shot in s.shots)

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.scenes)

    # ---- JSON -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "title": self.title,
            "scenes": [{
                **{f.name: getattr(s, f.name) for f in fields(SceneShots) if f.name not in ("characters", "shots")},
                "characters": list(s.characters),
                "shots": [_shot_dict(shot) for shot in s.shots],
            } for s in self.scenes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> ShotList:
        if not isinstance(data, dict):
            raise ShotListError("a shot list document must be a JSON object", field="")
        if data.get("schema") != SCHEMA:
            raise ShotListError(f"schema {data.get('schema')!r} is not {SCHEMA!r}", field="schema")
        scenes = data.get("scenes")
        if not isinstance(scenes, list):
            raise ShotListError("scenes: expected a list", field="scenes")
        out = []
        for i, s in enumerate(scenes):
            where = f"scenes[{i}]"
            if not isinstance(s, dict):
                raise ShotListError(f"{where}: expected an object", field=where)
            shots = s.get("shots")
            if not isinstance(shots, list):
                raise ShotListError(f"{where}.shots: expected a list", field=f"{where}.shots")
            chars = _names(f"{where}.characters", s.get("characters", []))
            out.append(SceneShots(
                number=_get(s, "number", where), heading=_get(s, "heading", where), setting=_get(s, "setting", where),
                location=_get(s, "location", where), time_of_day=_get(s, "time_of_day", where),
                line=_get(s, "line", where), characters=chars,
                shots=tuple(_shot_from(shot, f"{where}.shots[{j}]") for j, shot in enumerate(shots))))
        return cls(tuple(out), title=data.get("title", ""))

    @classmethod
    def from_json(cls, text: str) -> ShotList:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ShotListError(f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", field="") from None
        return cls.from_dict(data)

    # ---- CSV --------------------------------------------------------------------------------------------
    def to_csv(self) -> str:
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for s in self.scenes:
            for shot in s.shots:
                row = {
                    "title": self.title, "scene": str(s.number), "heading": s.heading, "setting": s.setting,
                    "location": s.location, "time_of_day": s.time_of_day, "scene_line": str(s.line),
                    "scene_characters": ";".join(s.characters),
                    "shot": shot.id, "size": shot.size.value, "move": shot.move.value,
                    "move_amount": "" if shot.move_amount is None else repr(float(shot.move_amount)),
                    "ease": shot.ease.value, "duration_s": repr(float(shot.duration_s)),
                    "characters": ";".join(shot.characters), "speaker": shot.speaker, "dialogue": shot.dialogue,
                    "action": shot.action, "prompt": shot.prompt, "line": str(shot.line),
                }
                writer.writerow([row[c] for c in CSV_COLUMNS])
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str) -> ShotList:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows or rows[0] != list(CSV_COLUMNS):
            raise ShotListError(f"CSV row 1: the header must be exactly {','.join(CSV_COLUMNS)}", field="header")
        scenes: list[SceneShots] = []
        title: str | None = None
        current: dict | None = None
        done: set[int] = set()

        def flush():
            if current is not None:
                scenes.append(SceneShots(**current["scene"], shots=tuple(current["shots"])))

        for n, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(CSV_COLUMNS):
                raise ShotListError(f"CSV row {n}: {len(row)} columns, expected {len(CSV_COLUMNS)}", field=f"row {n}")
            r = dict(zip(CSV_COLUMNS, row))
            try:
                if title is None:
                    title = r["title"]
                elif r["title"] != title:
                    raise ShotListError(f"title {r['title']!r} differs from row 2's {title!r}", field="title")
                scene = {"number": _int(r["scene"], "scene"), "heading": r["heading"], "setting": r["setting"],
                         "location": r["location"], "time_of_day": r["time_of_day"],
                         "line": _int(r["scene_line"], "scene_line"),
                         "characters": _split(r["scene_characters"])}
                if current is None or current["scene"]["number"] != scene["number"]:
                    flush()
                    if scene["number"] in done:
                        raise ShotListError(f"scene {scene['number']} appears again after other scenes; keep a "
                                            "scene's rows together", field="scene")
                    done.add(scene["number"])
                    current = {"scene": scene, "shots": []}
                elif current["scene"] != scene:
                    diff = [k for k in scene if scene[k] != current["scene"][k]]
                    raise ShotListError(f"scene {scene['number']}'s {', '.join(diff)} differ from its first row",
                                        field=diff[0])
                current["shots"].append(PlannedShot(
                    id=r["shot"], size=_enum(ShotSize, r["size"], "size"), move=_enum(CameraMove, r["move"], "move"),
                    duration_s=_float(r["duration_s"], "duration_s"),
                    characters=_split(r["characters"]), prompt=r["prompt"], action=r["action"], speaker=r["speaker"],
                    dialogue=r["dialogue"], line=_int(r["line"], "line"),
                    move_amount=None if r["move_amount"].strip() == "" else _float(r["move_amount"], "move_amount"),
                    ease=_enum(Ease, r["ease"], "ease")))
            except ShotListError as exc:
                raise ShotListError(f"CSV row {n}: {exc}", field=exc.field) from None
        flush()
        if not scenes:
            raise ShotListError("CSV has a header but no shots", field="scenes")
        try:
            return cls(tuple(scenes), title=title or "")
        except ShotListError as exc:
            raise ShotListError(f"CSV: {exc}", field=exc.field) from None


CSV_COLUMNS = ("scene", "heading", "setting", "location", "time_of_day", "scene_line", "scene_characters",
               "shot", "size", "move", "move_amount", "ease", "duration_s", "characters", "speaker", "dialogue",
               "action", "prompt", "line", "title")


def _shot_dict(shot: PlannedShot) -> dict:
    out: dict[str, Any] = {}
    for f in fields(PlannedShot):
        value = getattr(shot, f.name)
        if f.name == "characters":
            value = list(value)
        elif f.name in ("size", "move", "ease"):
            value = value.value
        elif f.name == "duration_s" or (f.name == "move_amount" and value is not None):
            value = float(value)
        out[f.name] = value
    return out


def _get(d: dict, key: str, where: str):
    if key not in d:
        raise ShotListError(f"{where}.{key}: missing", field=f"{where}.{key}")
    return d[key]


def _names(where: str, value) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ShotListError(f"{where}: expected a list of names", field=where)
    return tuple(value)


def _shot_from(d: Any, where: str) -> PlannedShot:
    if not isinstance(d, dict):
        raise ShotListError(f"{where}: expected an object", field=where)
    unknown = sorted(set(d) - {f.name for f in fields(PlannedShot)})
    if unknown:
        raise ShotListError(f"{where}: unknown fields {unknown}", field=where)
    kw = dict(d)
    for key in ("id", "size", "move", "duration_s"):
        _get(kw, key, where)
    try:
        kw["size"] = _enum(ShotSize, kw["size"], "size")
        kw["move"] = _enum(CameraMove, kw["move"], "move")
        if "ease" in kw:
            kw["ease"] = _enum(Ease, kw["ease"], "ease")
        if "characters" in kw:
            kw["characters"] = _names("characters", kw["characters"])
        return PlannedShot(**kw)
    except ShotListError as exc:
        raise ShotListError(f"{where}: {exc}", field=f"{where}.{exc.field}") from None


def _enum(enum, value, name: str):
    try:
        return enum(value)
    except ValueError:
        raise ShotListError(f"{name} {value!r} is not one of {', '.join(m.value for m in enum)}",
                            field=name) from None


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ShotListError(f"{name} {text!r} is not a whole number", field=name) from None


def _float(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ShotListError(f"{name} {text!r} is not a number", field=name) from None


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(";")) if text != "" else ()
