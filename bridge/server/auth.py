"""Who is calling: bearer tokens (kept only as SHA-256 digests) mapped to
the project each may see."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PermissionDeniedError
from ..jobs.store import JobRecord


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``project`` None means every project (admin or no auth);
    ``token_id`` names the token in audit records without revealing it
    ("" when the bridge has no tokens)."""

    project: str | None
    token_id: str = ""

    def check_project(self, project: str) -> None:
        if self.project is not None and self.project != project:
            raise PermissionDeniedError(f"this token is for project {self.project!r}, not {project!r}")

    def can_see(self, job: JobRecord) -> bool:
        return self.project is None or self.project == job.project
