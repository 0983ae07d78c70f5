"""Names a person typed (a Blender scene, a Level Sequence, a USD file) as
shot tags: the project and shot names that become folder and file names on
the bridge and in the add-ons' caches. ``validation`` refuses any tag this
function could not have produced.
"""

from __future__ import annotations

import re

MAX_TAG_LEN = 64
_NOT_TAG = re.compile(r"[^A-Za-z0-9._-]+")


def safe_tag(text: str, default: str = "") -> str:
    """``'My Shot 1'`` -> ``'My_Shot_1'``: every run of characters other
    than ASCII letters, digits, ``.``, ``_`` and ``-`` becomes one ``_``,
    leading and trailing ``._-`` go, at most 64 characters are kept.
    Returns ``default`` when nothing is left (callers that must refuse
    such a name check for "")."""
    cleaned = _NOT_TAG.sub("_", text).strip("._-")[:MAX_TAG_LEN]
    return cleaned or default
