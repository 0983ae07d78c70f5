"""Greenlight for Unreal: previz from a Level Sequence, frames back as a media track.

Split like the Blender add-on (STYLE practices 3, 5, 6):

- engine-free (plain Python + numpy, tested without Unreal):
  ``settings`` (typed options), ``mrq_exr`` (Movie Render Queue EXR passes),
  ``skeleton`` (UE5 Manny/Quinn -> COCO-18), ``shot_builder`` (plain samples ->
  ``bridge.shot.Shot`` via ``bridge.shot.coords``), ``worker`` (submit + watch
  on a thread, results marshalled to the game thread), ``previz`` (the steps
  of one run, calling host functions only through ``host``);
- ``host``: the only module that calls ``unreal``; every function there ends
  in ``_in_unreal``.

``init_unreal.py`` (one folder up) registers the menus at editor start-up.
"""

__version__ = "0.1.0"
