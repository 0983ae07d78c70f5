"""Cross-DCC: one camera path in canonical space, converted to Unreal and
back, is identical; a real Blender (bpy) camera built from the same values
has the same matrix_world and projects points where bridge.shot does."""

import numpy as np

from bridge.shot.camera import look_at, project
from bridge.shot.coords import (
    camera_to_canonical,
    camera_to_unreal,
    cine_camera_sample,
    position_to_unreal,
    rotator_to_matrix,
)


def _path(n=24):
    t = np.linspace(0, 1, n)
    eyes = np.stack([6 * np.cos(2 * t), 6 * np.sin(2 * t) - 1, 1.5 + 0.8 * t], axis=1)
    targets = np.stack([0.3 * t, 0.2 * np.sin(5 * t), 1.0 + 0 * t], axis=1)
    return [look_at(e, c) for e, c in zip(eyes, targets)]


def test_canonical_path_survives_unreal_round_trip():
    for m in _path():
        loc_cm, rot = camera_to_unreal(m)
        back = camera_to_canonical(loc_cm, rot)
        assert np.abs(back - m).max() < 1e-6
        # Unreal's forward (+X of the rotator), with Y mirrored, is the canonical view direction
        ue_forward = rotator_to_matrix(rot)[:, 0]
        assert np.allclose(ue_forward * [1, -1, 1], -m[:3, 2])
        assert np.allclose(loc_cm, position_to_unreal(m[:3, 3]))


def test_blender_camera_matches_unreal_conversion():
    import bpy
    from mathutils import Matrix, Vector

    from bpy_extras.object_utils import world_to_camera_view

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = 35.0, 36.0, "HORIZONTAL"
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    points = np.array([[0.5, 0.2, 1.2], [-0.4, 0.3, 0.8], [0.0, -0.5, 1.6]])
    for m in _path(8):
        loc_cm, rot = camera_to_unreal(m)                   # what Unreal would hold
        canonical = camera_to_canonical(loc_cm, rot)        # what the plugin sends
        cam.matrix_world = Matrix(canonical.tolist())
        bpy.context.view_layer.update()
        assert np.abs(np.array(cam.matrix_world) - m).max() < 1e-6
        sample = cine_camera_sample(canonical, 35.0, 36.0, 20.25)
        px, depth = project(sample, 640, 360, points)
        for p, (x, y), d in zip(points, px, depth):
            ndc = world_to_camera_view(scene, cam, Vector(p.tolist()))
            assert abs(ndc.x * 640 - x) < 1e-3 and abs((1 - ndc.y) * 360 - y) < 1e-3 and abs(ndc.z - d) < 1e-5
