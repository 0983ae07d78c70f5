"""RAPL through the Linux powercap interface: CPU packages and DRAM.

Each zone directory under ``/sys/class/powercap`` (``intel-rapl:0``,
``intel-rapl:0:2``, ``intel-rapl-mmio:0``; AMD exposes the same layout)
holds ``name``, ``energy_uj`` (a counter in microjoules that wraps at
``max_energy_range_uj``) and ``max_energy_range_uj``.

What is summed, and why:

- ``package-N`` zones (top level): the whole socket, cores and uncore included.
- ``dram`` zones: memory; not part of the package counter.
- ``core`` / ``uncore`` subzones are skipped: the package already holds them.
- ``psys`` (platform) is skipped when packages exist: it includes them.
- The same domain seen twice (``intel-rapl-mmio:0`` next to ``intel-rapl:0``,
  or one directory reached by two links) is counted once.

Counters wrap (at ~262 kJ on many parts: minutes at full load on a big
server), so the meter keeps the last raw value per zone and adds
``max_energy_range_uj - last + raw`` when it goes backwards. More than one
wrap between two reads cannot be seen: read at least every few minutes
(the executor reads at every frame).

Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694);
the meter says so instead of reporting zero.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .reading import MeterError, Reading

_ZONE = re.compile(r"^(?P<type>[a-z-]+):(?P<path>\d+(?::\d+)*)$")


@dataclass
class _Domain:
    label: str          # "package-0", "package-0/dram"
    path: Path          # the zone directory
    max_range_uj: int
    last_raw: int = 0
    total_uj: int = 0


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover(root: str | Path = "/sys/class/powercap") -> tuple[list[tuple[str, Path]], list[str]]:
    """The zones to sum as (label, directory), and notes on what was skipped."""
    root = Path(root)
    if not root.is_dir():
        raise MeterError(f"{root} does not exist (no powercap: not Linux, or RAPL not exposed in this VM/container)")
    zones = []
    for entry in sorted(os.listdir(root)):
        m = _ZONE.match(entry)
        if m and (root / entry / "energy_uj").exists():
            # MSR-based zones first: a duplicate MMIO zone then loses.
            zones.append((m.group("type").endswith("-mmio"), m.group("type"), m.group("path"), root / entry))
    zones.sort()
    names: dict[tuple[str, str], str] = {}
    for _, ztype, zpath, zdir in zones:
        names[(ztype, zpath)] = (zdir / "name").read_text().strip() if (zdir / "name").exists() else ztype
    has_package = any(n.startswith("package") for n in names.values())

    chosen: list[tuple[str, Path]] = []
    notes: list[str] = []
    seen_labels: set[str] = set()
    seen_real: set[str] = set()
    for _, ztype, zpath, zdir in zones:
        name = names[(ztype, zpath)]
        parent = zpath.rsplit(":", 1)[0] if ":" in zpath else None
        parent_name = names.get((ztype, parent)) if parent else None
        if name.startswith("package") and parent is None:
            label = name
        elif name == "dram":
            label = f"{parent_name}/dram" if parent_name else "dram"
        elif name == "psys" and not has_package:
            label = "psys"
        else:
            why = "inside its package" if name in ("core", "uncore") else "includes the packages"
            notes.append(f"skipped {zdir.name} ({name}): {why}")
            continue
        real = os.path.realpath(zdir)
        if label in seen_labels or real in seen_real:
            notes.append(f"skipped {zdir.name} ({name}): duplicate of {label}")
            continue
        seen_labels.add(label)
        seen_real.add(real)
        chosen.append((label, zdir))
    if not chosen:
        raise MeterError(f"{root}: no RAPL package or DRAM zones")
    return chosen, notes


class RaplMeter:
    """Measured CPU package + DRAM energy since the meter was created."""

    min_window_s = 0.0

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        chosen, self.notes = discover(root)
        self._lock = threading.Lock()
        self.domains: list[_Domain] = []
        for label, zdir in chosen:
            try:
                raw = _read_int(zdir / "energy_uj")
                max_range = _read_int(zdir / "max_energy_range_uj")
            except PermissionError as exc:
                raise MeterError(f"{zdir / 'energy_uj'} is not readable ({exc.strerror}); since Linux 5.10 "
                                 "RAPL counters are root-only: run the bridge as root or grant read access "
                                 "(e.g. a udev rule / chmod o+r on energy_uj)") from exc
            except (OSError, ValueError) as exc:
                raise MeterError(f"{zdir}: cannot read the RAPL counter: {exc}") from exc
            if max_range <= 0:
                raise MeterError(f"{zdir / 'max_energy_range_uj'}: {max_range} is not a valid range")
            self.domains.append(_Domain(label, zdir, max_range, last_raw=raw))
        self.name = "rapl:" + "+".join(d.label for d in self.domains)

    def describe(self) -> str:
        skipped = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"{', '.join(d.label for d in self.domains)}{skipped}"

    def read(self) -> Reading:
        flags = set()
        with self._lock:
            for d in self.domains:
                raw = _read_int(d.path / "energy_uj")
                if raw >= d.last_raw:
                    d.total_uj += raw - d.last_raw
                else:  # wrapped past max_energy_range_uj
                    d.total_uj += d.max_range_uj - d.last_raw + raw
                    flags.add("counter-wrap")
                d.last_raw = raw
            parts = tuple((d.label, d.total_uj / 1e6) for d in self.domains)
        return Reading(sum(j for _, j in parts), measured=True, meter=self.name, t=time.monotonic(),
                       parts=parts, flags=tuple(sorted(flags)))
