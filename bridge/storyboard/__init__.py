"""From screenplay to shot list to blocking, engine-free.

``screenplay`` reads Fountain and Final Draft (the optional ``storyboard``
extra), ``shots`` is the editable shot list (CSV/JSON), ``planner`` derives
it from a script by documented rules (or a plug-in planner), ``blocking``
turns it into set sizes, character marks, poses and camera paths
(``bridge.shot.moves``) for a host to build. Nothing here imports an engine.
"""
