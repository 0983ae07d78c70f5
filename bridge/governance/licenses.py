"""The licence gate: a commercial project runs only models whose every
component is cleared for commercial use (``commercial = "yes"`` in the
profile's ``[licenses.<component>]``; unknown counts as no)."""

from __future__ import annotations

from ..backends.profiles import ModelProfile
from ..errors import PreconditionError

FIELD = "generation.model_profile"


def check_commercial(profile: ModelProfile, project: str, commercial: bool) -> None:
    """Refuse ``profile`` for a commercial ``project`` when a component is not cleared."""
    if not commercial:
        return
    uncleared = profile.uncleared()
    if not uncleared:
        return
    listed = "; ".join(f"{component}: {lic.label()}" for component, lic in uncleared)
    raise PreconditionError(
        f"project {project!r} is commercial, and model profile {profile.name!r} has components not cleared for "
        f"commercial use ({listed}); choose another profile, or the bridge's operator sets "
        f"[projects.{project}] commercial = false for non-commercial work (an unknown licence counts as not "
        "cleared)")


def license_map(profile: ModelProfile) -> dict[str, dict]:
    """Every component's licence, for reports and recipes."""
    return {component: profile.license(component).to_dict() for component in profile.components}
