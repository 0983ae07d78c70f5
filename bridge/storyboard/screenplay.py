"""Screenplays in: Fountain (``.fountain``) and Final Draft (``.fdx``).

Parsing is done by ``screenplay-tools`` (MIT, pure Python, no dependencies;
the optional extra ``pip install 'greenlight[storyboard]'``), imported only
when a script is parsed. This module wraps it into a small typed model and
adds what the library lacks:

- source line numbers on every heading, action, dialogue and transition (the
  library keeps none), so every error names its line;
- Final Draft paragraphs split into several ``<Text>`` runs (Final Draft
  starts a new run at every style change) are joined before parsing (the
  library reads only the first run);
- Fountain action paragraphs stay separate (the library merges them);
- ``FADE IN:``, which the library takes for a scene heading, is a transition;
- headings split into setting (INT, EXT, INT/EXT), location and time of day.

A malformed script raises ``ScreenplayError`` (an ``InvalidArgumentError``)
whose message starts with ``<source>, line N:``.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GreenlightError, InvalidArgumentError

__all__ = [
    "Heading", "Action", "Dialogue", "Transition", "Scene", "Screenplay", "ScreenplayError",
    "parse_fountain", "parse_fdx", "load_screenplay", "parse_heading",
]

INSTALL_HINT = "pip install 'greenlight[storyboard]' (or pip install screenplay-tools)"


class ScreenplayError(InvalidArgumentError):
    """A script that cannot be read; ``line`` is its 1-based source line."""

    wire_fields = {"field": str, "line": int}

    def __init__(self, source: str, line: int, message: str):
        super().__init__(f"{source}, line {line}: {message}", field=f"line {line}")
        self.source = source
        self.line = line


@dataclass(frozen=True)
class Heading:
    """``INT. LIGHTHOUSE KITCHEN - NIGHT``: setting INT, location
    ``LIGHTHOUSE KITCHEN``, time of day ``NIGHT``. A forced Fountain heading
    (``.FLASHBACK``) has setting ""."""

    text: str
    setting: str
    location: str
    time_of_day: str
    line: int
    scene_number: str = ""

    @property
    def interior(self) -> bool:
        return self.setting != "EXT"


@dataclass(frozen=True)
class Action:
    text: str
    line: int


@dataclass(frozen=True)
class Dialogue:
    """One spoken line: ``parenthetical`` is the direction just before it
    (``quietly``, without brackets); ``extension`` the cue's (``V.O.``, ``O.S.``)."""

    character: str
    text: str
    line: int
    parenthetical: str = ""
    extension: str = ""

    @property
    def off_screen(self) -> bool:
        return self.extension.replace(".", "").replace(" ", "").upper() in ("VO", "OS", "OC", "OFF")


@dataclass(frozen=True)
class Transition:
    text: str
    line: int


Element = Action | Dialogue | Transition


@dataclass(frozen=True)
class Scene:
    number: int
    heading: Heading
    elements: tuple[Element, ...]

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.character for e in self.elements if isinstance(e, Dialogue)))


@dataclass(frozen=True)
class Screenplay:
    scenes: tuple[Scene, ...]
    title: str = ""
    source: str = ""
    format: str = "fountain"
    opening: tuple[Transition, ...] = ()   # transitions before the first heading (FADE IN:)

    @property
    def characters(self) -> tuple[str, ...]:
        """Every character, in order of first appearance: the speakers, and
        names introduced in capitals in the action with a bracket after them
        (``TOM (60s) sits``), the Fountain and Final Draft convention."""
        names: dict[str, None] = {}
        speakers = {e.character for s in self.scenes for e in s.elements if isinstance(e, Dialogue)}
        for scene in self.scenes:
            for e in scene.elements:
                if isinstance(e, Dialogue):
                    names.setdefault(e.character)
                elif isinstance(e, Action):
                    for m in _CAPS_NAME.finditer(e.text):
                        name = m.group(1)
                        if name in speakers or m.group(2):
                            names.setdefault(name)
        return tuple(names)


_CAPS_NAME = re.compile(r"\b([A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+)*)\b(\s*\()?")
_HEADING = re.compile(r"^\s*(INT\.?\s*/\s*EXT|EXT\.?\s*/\s*INT|I\s*/\s*E|INT|EXT|EST)(?:\.|\s|$)\s*(.*)$", re.I)
_TIME_SPLIT = re.compile(r"(?:^|\s+)[-\u2013\u2014]+(?:\s+|$)")
_OPENING = re.compile(r"^\s*FADE IN:?\s*$", re.I)


def parse_heading(text: str, line: int, source: str = "<script>", scene_number: str = "",
                  forced: bool = False) -> Heading:
    text = " ".join(text.split())
    m = _HEADING.match(text)
    if not m:
        if forced and text:
            return Heading(text, "", text, "", line, scene_number)
        raise ScreenplayError(source, line, f"{text!r} is not a scene heading; write it like 'INT. KITCHEN - NIGHT'")
    prefix = m.group(1).upper().replace(" ", "").replace(".", "")
    setting = {"INT": "INT", "EXT": "EXT", "EST": "EXT"}.get(prefix, "INT/EXT")
    rest = m.group(2).strip()
    parts = _TIME_SPLIT.split(rest, maxsplit=0)
    location = parts[0].strip(" .-") if parts else ""
    time_of_day = parts[-1].strip(" .") if len(parts) > 1 else ""
    if len(parts) > 2:   # "EXT. PIER - END - DAWN": only the last part is the time of day
        location = " - ".join(p.strip() for p in parts[:-1])
    if not location:
        raise ScreenplayError(source, line, f"scene heading {text!r} names no location; "
                              "write it like 'INT. KITCHEN - NIGHT'")
    return Heading(text, setting, location, time_of_day.upper(), line, scene_number)


def _library():
    try:
        from screenplay_tools import screenplay  # pyright: ignore[reportMissingImports]
        from screenplay_tools.fdx import parser as fdx  # pyright: ignore[reportMissingImports]
        from screenplay_tools.fountain import parser as fountain  # pyright: ignore[reportMissingImports]
    except ImportError as exc:
        raise GreenlightError(f"reading screenplays needs the screenplay-tools package: {INSTALL_HINT}") from exc
    return screenplay, fountain, fdx


def _text(s: str) -> str:
    return " ".join(s.split())


def parse_fountain(text: str, source: str = "<fountain>") -> Screenplay:
    """Parse Fountain text; ``source`` names the script in error messages."""
    sp, fountain, _ = _library()
    parser = fountain.Parser()
    lines_of: dict[int, tuple[object, int]] = {}   # id -> (element kept alive so ids stay unique, line)
    elements = parser.script.elements
    seen = 0
    boneyard_opened = 0
    n = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        in_boneyard = parser._boneyard is not None
        parser.add_line(raw)
        if parser._boneyard is not None and not in_boneyard:
            boneyard_opened = n
        for pending in parser._pending:   # a cue or transition waits for the next line; it began here
            for elem in (pending["element"], pending["backup"]):
                lines_of.setdefault(id(elem), (elem, n))
        for elem in elements[seen:]:
            lines_of.setdefault(id(elem), (elem, n))
        seen = len(elements)
    parser.finalize()
    for elem in elements[seen:]:
        lines_of.setdefault(id(elem), (elem, n))
    if parser._boneyard is not None:
        raise ScreenplayError(source, boneyard_opened, "a /* boneyard comment is never closed with */")

    items: list[tuple[Any, int]] = []
    for elem in elements:
        start = lines_of.get(id(elem), (elem, 1))[1]
        if elem.type is sp.ElementType.ACTION:
            # the library merges action paragraphs (and the blank lines between them) into one element
            offset = 0
            for i, chunk in enumerate(re.split(r"(\n\s*\n)", elem.text)):
                if i % 2 == 0 and chunk.strip():
                    leading = chunk[:len(chunk) - len(chunk.lstrip())].count("\n")
                    items.append((sp.Action(chunk), start + offset + leading))
                offset += chunk.count("\n")
        else:
            items.append((elem, start))
    title = next((e.text.strip() for e in parser.script.titleEntries if e.key.strip().lower() == "title"), "")
    return _build(sp, items, source=source, title=title, fmt="fountain")


def _fdx_paragraphs(text: str, source: str) -> list[tuple[int, str, str]]:
    """(line, Type, text of all its runs) of every script paragraph (children
    of <Content>, and of <DualDialogue> inside one), in document order, read
    with expat (which knows line numbers; ElementTree does not)."""
    found: list[tuple[int, str, str]] = []
    stack: list[str] = []
    open_paragraphs: list[tuple[int, list]] = []   # (index in found, runs)
    in_text = [0]

    def start(name, attrs):
        if not stack and name != "FinalDraft":
            raise ScreenplayError(source, parser.CurrentLineNumber,
                                  f"the root element is <{name}>, not <FinalDraft>: is this a Final Draft file?")
        parent = stack[-1] if stack else ""
        stack.append(name)
        if name == "Paragraph" and (stack[:3] == ["FinalDraft", "Content", "Paragraph"] and len(stack) == 3
                                    or parent == "DualDialogue"):
            found.append((parser.CurrentLineNumber, attrs.get("Type", "Action"), ""))
            open_paragraphs.append((len(found) - 1, []))
        elif name == "Text" and open_paragraphs:
            in_text[0] += 1

    def end(name):
        stack.pop()
        if name == "Paragraph" and open_paragraphs and (len(stack) == 2 or (stack and stack[-1] == "DualDialogue")):
            index, runs = open_paragraphs.pop()
            line, kind, _ = found[index]
            found[index] = (line, kind, "".join(runs))
        elif name == "Text" and open_paragraphs:
            in_text[0] -= 1

    def chars(data):
        if open_paragraphs and in_text[0] > 0:
            open_paragraphs[-1][1].append(data)

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise ScreenplayError(source, exc.lineno, f"not well-formed XML ({xml.parsers.expat.ErrorString(exc.code)}, "
                              f"column {exc.offset + 1})") from None
    # a paragraph that only wraps a <DualDialogue> has no text of its own
    return [(line, kind, words) for line, kind, words in found if words.strip() or kind != "Action"]


# Final Draft paragraph types read as something else (the library would make a "Shot" a scene heading)
_FDX_TYPES = {"Shot": "Action"}
_FDX_SKIPPED = {"Cast List", "New Act", "End of Act"}


def parse_fdx(text: str, source: str = "<fdx>") -> Screenplay:
    """Parse Final Draft XML; ``source`` names the script in error messages."""
    sp, _, fdx = _library()
    paragraphs = [(line, _FDX_TYPES.get(kind, kind), words)
                  for line, kind, words in _fdx_paragraphs(text.lstrip("\ufeff"), source) if kind not in _FDX_SKIPPED]
    if not paragraphs:
        raise ScreenplayError(source, 1, "no <Content> paragraphs: the script is empty")
    # Hand the library one paragraph per entry with all its runs joined (it reads only the first <Text>).
    from xml.sax.saxutils import escape, quoteattr
    body = "".join(f"<Paragraph Type={quoteattr(kind)}><Text>{escape(words)}</Text></Paragraph>"
                   for _, kind, words in paragraphs)
    script = fdx.Parser().parse(f"<FinalDraft><Content>{body}</Content></FinalDraft>")
    if len(script.elements) != len(paragraphs):   # pragma: no cover - the library adds one element per paragraph
        raise GreenlightError("screenplay-tools returned a different number of FDX paragraphs than the file has")
    items = [(elem, line) for elem, (line, _, _) in zip(script.elements, paragraphs)]
    return _build(sp, items, source=source, title="", fmt="fdx")


def _build(sp, items: Sequence[tuple[Any, int]], *, source: str, title: str, fmt: str) -> Screenplay:
    T = sp.ElementType
    scenes: list[Scene] = []
    opening: list[Transition] = []
    heading: Heading | None = None
    body: list[Element] = []
    cue: tuple[str, str, int] | None = None   # (name, extension, line) of the current speech
    parenthetical = ""

    def close():
        if heading is not None:
            scenes.append(Scene(len(scenes) + 1, heading, tuple(body)))

    for elem, line in items:
        kind = elem.type
        if kind in (T.TITLEENTRY, T.NOTE, T.BONEYARD, T.SECTION, T.SYNOPSIS, T.PAGEBREAK):
            continue
        if kind is T.HEADING and _OPENING.match(elem.text):
            kind, text = T.TRANSITION, _text(elem.text)
        else:
            text = _text(elem.text) if kind is not T.CHARACTER else ""
        if kind not in (T.PARENTHETICAL, T.DIALOGUE, T.LYRIC):
            cue, parenthetical = None, ""
        if kind is T.HEADING:
            close()
            if not text:
                raise ScreenplayError(source, line, "empty scene heading")
            heading = parse_heading(text, line, source, scene_number=getattr(elem, "scene_number", None) or "",
                                    forced=bool(getattr(elem, "forced", False)))
            body = []
            continue
        if kind is T.TRANSITION:
            if not text:
                raise ScreenplayError(source, line, "empty transition")
            (body if heading is not None else opening).append(Transition(text, line))
            continue
        if heading is None:
            what = {T.ACTION: "action", T.CHARACTER: "a character cue"}.get(kind, "dialogue")
            raise ScreenplayError(source, line, f"{what} before the first scene heading; "
                                  "start the script with a heading like 'INT. KITCHEN - NIGHT'")
        if kind is T.ACTION:
            if text:
                body.append(Action(text, line))
        elif kind is T.CHARACTER:
            name = _text(elem.name or "")
            if not name:
                raise ScreenplayError(source, line, "a character cue with no name")
            cue, parenthetical = (name, _text(elem.extension or ""), line), ""
        elif kind is T.PARENTHETICAL:
            if cue is None:
                raise ScreenplayError(source, line, "a parenthetical outside a speech (no character cue above it)")
            parenthetical = text
        elif kind is T.LYRIC and cue is None:   # a Fountain lyric outside a speech is sung over the action
            if text:
                body.append(Action(text, line))
        elif kind in (T.DIALOGUE, T.LYRIC):
            if cue is None:
                raise ScreenplayError(source, line, "dialogue without a character cue above it")
            if text:
                body.append(Dialogue(cue[0], text, line, parenthetical, cue[1]))
            parenthetical = ""
    close()
    if not scenes:
        raise ScreenplayError(source, 1, "no scene heading found; start each scene with a line like "
                              "'INT. KITCHEN - NIGHT'")
    return Screenplay(tuple(scenes), title=title, source=source, format=fmt, opening=tuple(opening))


FORMATS = {".fountain": "fountain", ".spmd": "fountain", ".txt": "fountain", ".fdx": "fdx"}


def load_screenplay(path: str | Path) -> Screenplay:
    """Read a ``.fountain`` (``.spmd``, ``.txt``) or ``.fdx`` file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidArgumentError(f"{path.name}: unknown screenplay format {path.suffix!r}; "
                                   f"use one of {', '.join(sorted(FORMATS))}", field="script")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"{path.name}: not UTF-8 text (byte {exc.start})", field="script") from None
    return (parse_fountain if fmt == "fountain" else parse_fdx)(text, source=path.name)

