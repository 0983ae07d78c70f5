"""Studio governance (docs/governance.md): which model licences a project
may use (``licenses``), what made each frame and whether it can be made
again (``recipe``, ``replay``), and per-project encryption at rest
(``encryption``). Nothing here imports torch at module import time."""
