"""Point-cloud adapter: every format reads, the projection is invariant as promised, known shapes look right."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from modality_adapters import AdapterLimits, get_adapter
from modality_adapters.pointcloud import TRAINING_SPLAT, farthest_point_sample, normalize_points, project_views
from modality_adapters.pointcloud_io import read_points
from modality_adapters.pointcloud_views import canonical_pose, splat_radius, upright_pose, views_of
from unirep_errors import InputTooLargeError

SMALL = {"num_points": 512, "image_size": 64}


def cloud_bytes(media, points: np.ndarray, fmt: str) -> bytes:
    if fmt in ("ply", "pcd", "xyz", "pts"):
        return media.open3d_file(points, fmt)
    if fmt in ("ply-binary", "pcd-binary"):
        return media.open3d_file(points, fmt.split("-")[0], binary=True)
    if fmt == "npy":
        return media.npy(points)
    if fmt == "npy-f32":
        return media.npy(points.astype(np.float32))
    if fmt == "json":
        return json.dumps(points.tolist()).encode()
    if fmt == "json-object":
        return json.dumps({"points": points.tolist()}).encode()
    if fmt == "xyz-text":
        return "\n".join(" ".join(f"{v:.9f}" for v in row) for row in points).encode()
    raise AssertionError(fmt)


FORMATS = ["ply", "ply-binary", "pcd", "pcd-binary", "xyz", "pts", "npy", "npy-f32", "json", "json-object", "xyz-text"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_agree(media, fmt) -> None:
    points = media.cloud(400)
    adapter = get_adapter("pointcloud")
    data = cloud_bytes(media, points, fmt)
    read = read_points(data, None, adapter.limits, mesh_samples=0)
    order = np.lexsort(points.T[::-1])
    np.testing.assert_allclose(read[np.lexsort(read.T[::-1])], points[order], atol=1e-5)
    out = adapter.decode(data, **SMALL)  # 512 >= 400 points: no sampling, so only pixel binning could differ
    assert out.shape == (3, 64, 64) == adapter.output_shape(**SMALL)
    reference = adapter.decode(media.npy(points), **SMALL)
    # float32 storage and text rounding move a point by < 1e-5, which can flip only a pixel or two.
    assert ((out > 0) != (reference > 0)).float().mean() < 0.002
    both = (out > 0) & (reference > 0)
    assert (out[both] - reference[both]).abs().max() < 1e-4


@pytest.mark.parametrize("fmt", ["off", "obj", "ply"])
@pytest.mark.parametrize("shape", ["box", "sphere"])
def test_meshes_are_sampled(media, fmt, shape) -> None:
    out = get_adapter("pointcloud").decode(media.mesh_file(fmt, shape), **SMALL)
    assert out.shape == (3, 64, 64) and out.max() <= 1.0 and (out > 0).float().mean() > 0.05


def test_format_hint_overrides_sniffing(media) -> None:
    data = cloud_bytes(media, media.cloud(300), "xyz-text")
    out = get_adapter("pointcloud").decode(data, format="xyz", **SMALL)
    assert out.shape == (3, 64, 64)


@pytest.mark.parametrize("sampling", ["fps", "random"])
def test_invariant_to_order_translation_and_scale(media, sampling) -> None:
    points = media.cloud(3000, seed=3)
    adapter = get_adapter("pointcloud")
    params = {"num_points": 1024, "image_size": 96, "sampling": sampling}
    reference = adapter.decode(media.npy(points), **params)
    rng = np.random.default_rng(7)
    variants = {
        "order": points[rng.permutation(len(points))],
        "translation": points + np.array([3.25, -40.0, 0.7]),
        "scale": points * 2.5,
        "all": (points[rng.permutation(len(points))] - 11.0) * 0.01,
    }
    for name, variant in variants.items():
        assert torch.equal(adapter.decode(media.npy(variant), **params), reference), name


def test_unit_cube_surface_gives_a_flat_square(media) -> None:
    rng = np.random.default_rng(0)
    faces = []
    for axis in range(3):
        for side in (-0.5, 0.5):
            f = rng.uniform(-0.5, 0.5, (4000, 3))
            f[:, axis] = side
            faces.append(f)
    cube = np.concatenate(faces)
    size = 16  # coarse enough that every pixel of a face holds many of the sampled points
    out = get_adapter("pointcloud").decode(media.npy(cube), num_points=8192, image_size=size)
    half = 0.5 / np.sqrt(0.75)  # the face's distance from the centre after scaling the corners to radius 1
    expected_value = (half + 2) / 3
    lo, hi = int(np.floor((1 - half) / 2 * size)), int(np.ceil((1 + half) / 2 * size))
    for view in out:
        occupied = view > 0
        rows, cols = np.nonzero(occupied.numpy())
        assert rows.min() >= lo and rows.max() < hi and cols.min() >= lo and cols.max() < hi
        inner = view[lo + 1 : hi - 1, lo + 1 : hi - 1]
        assert (inner > 0).all()  # every pixel of the face is hit at this density
        torch.testing.assert_close(inner, torch.full_like(inner, expected_value), atol=0.02, rtol=0)


def test_plane_is_a_filled_disc_from_the_front_and_a_line_from_the_side(media) -> None:
    rng = np.random.default_rng(1)
    plane = np.c_[rng.uniform(-1, 1, (20000, 2)), np.zeros(20000)]  # the z = 0 plane
    size = 32
    front, side, top = get_adapter("pointcloud").decode(media.npy(plane), num_points=8192, image_size=size)
    assert (front > 0).float().mean() > 0.4  # a square inscribed in the unit circle fills half the image
    torch.testing.assert_close(front[front > 0], torch.full_like(front[front > 0], 2 / 3))
    # From the side (u = -z) and top (v = -z) the plane collapses onto the centre column / row.
    assert set(np.nonzero(side.numpy())[1].tolist()) == {size // 2}
    assert set(np.nonzero(top.numpy())[0].tolist()) == {size // 2}


def test_nearest_point_wins_per_pixel() -> None:
    pts = np.array([[0.0, 0.0, -0.5], [0.0, 0.0, 0.9], [0.0, 0.0, 0.2], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    views = project_views(normalize_points(pts), 8)
    centre = views[0, 4, 4]  # front view: the point with the largest z in that pixel
    unit = normalize_points(pts)
    assert abs(float(centre) - (unit[:, 2].max() + 2) / 3) < 1e-6


def test_fps_spreads_points() -> None:
    rng = np.random.default_rng(0)
    cluster = np.r_[rng.normal(0, 0.01, (1000, 3)), [[5.0, 0, 0]], [[-5.0, 0, 0]]]
    idx = farthest_point_sample(cluster, 3)
    assert len(set(idx.tolist())) == 3
    assert {1000, 1001} <= set(idx.tolist())  # both outliers are picked before a second cluster point


def test_nan_rows_are_dropped(media) -> None:
    points = media.cloud(500)
    dirty = np.r_[points, [[np.nan, 0, 0], [np.inf, 1, 1]]]
    adapter = get_adapter("pointcloud")
    assert torch.equal(adapter.decode(media.npy(dirty), **SMALL), adapter.decode(media.npy(points), **SMALL))


def test_point_limit(media) -> None:
    adapter = get_adapter("pointcloud", AdapterLimits(max_points=100))
    for fmt in ("ply", "npy", "json", "xyz-text"):
        with pytest.raises(InputTooLargeError, match="points"):
            adapter.decode(cloud_bytes(media, media.cloud(200), fmt), **SMALL)


def test_preview_png(media) -> None:
    adapter = get_adapter("pointcloud")
    image = Image.open(io.BytesIO(adapter.preview(adapter.decode(media.npy(media.cloud(500)), **SMALL))))
    assert image.format == "PNG" and image.width > 3 * image.height - 20


def test_extreme_coordinates_neither_overflow_nor_change_the_result(media) -> None:
    points = media.cloud(300)
    adapter = get_adapter("pointcloud")
    reference = adapter.decode(media.npy(points), **SMALL)
    with np.errstate(all="raise"):
        huge = adapter.decode(media.npy(points * 1e305), **SMALL)
        tiny = adapter.decode(media.npy(points * 1e-300), **SMALL)
    assert torch.equal(huge, reference) and torch.equal(tiny, reference)


# --- pose and channels ----------------------------------------------------------------------------------------------


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _lopsided(n: int = 3000) -> np.ndarray:
    """A cloud with distinct variances along its axes and a clear third moment along each: a unique frame."""
    rng = np.random.default_rng(5)
    return rng.gamma(2.0, 1.0, size=(n, 3)) * (1.0, 0.6, 0.3)


def test_canonical_pose_removes_any_rotation() -> None:
    points = normalize_points(_lopsided())
    reference = canonical_pose(points)
    for seed in range(5):
        rotated = points @ _rotation(seed).T
        np.testing.assert_allclose(canonical_pose(rotated), reference, atol=1e-9)
        # the file's own axes do change with the rotation: what the canonical pose is for
        assert (project_views(rotated, 32) - project_views(points, 32)).abs().mean() > 0.01


def test_canonical_pose_is_a_rotation_never_a_mirror() -> None:
    points = normalize_points(_lopsided())
    mirrored = points * (1.0, 1.0, -1.0)
    for cloud in (points, mirrored):
        posed = canonical_pose(cloud)
        frame, *_ = np.linalg.lstsq(cloud, posed, rcond=None)  # posed = cloud @ frame
        np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-9)
        assert np.linalg.det(frame) > 0
        assert np.var(posed[:, 0]) >= np.var(posed[:, 1]) >= np.var(posed[:, 2])
    # a mirror image stays a mirror image (its canonical pose is not the original's)
    assert np.abs(canonical_pose(points) - canonical_pose(mirrored)).max() > 0.1


def test_upright_pose_keeps_the_up_axis_and_removes_turns_about_it() -> None:
    points = normalize_points(_lopsided())
    reference = upright_pose(points)
    np.testing.assert_allclose(reference[:, 1], points[:, 1])
    for angle in (0.3, 2.0, 4.5):
        c, s = np.cos(angle), np.sin(angle)
        turned = points @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
        np.testing.assert_allclose(upright_pose(turned), reference, atol=1e-9)


def test_served_map_of_a_rotated_file_is_the_same_in_canonical_pose(media) -> None:
    points = _lopsided(400)  # fewer points than num_points: no sampling, so only the pose could differ
    adapter = get_adapter("pointcloud")
    params = {**SMALL, "pose": "canonical"}
    reference = adapter.decode(media.npy(points), **params)
    rotated = adapter.decode(media.npy(points @ _rotation(3).T + 4.0), **params)
    assert ((reference > 0) != (rotated > 0)).float().mean() < 0.002  # rounding may move a point across a pixel


def test_channel_kinds_stack_in_view_order(media) -> None:
    adapter = get_adapter("pointcloud")
    data = media.npy(media.cloud(500))
    near = adapter.decode(data, **SMALL)
    out = adapter.decode(data, channels="near+far+density", **SMALL)
    assert out.shape == (9, 64, 64) == adapter.output_shape(channels="near+far+density", **SMALL)
    assert torch.equal(out[:3], near)
    far, density = out[3:6], out[6:]
    assert torch.equal(far > 0, near > 0) and torch.equal(density > 0, near > 0)
    assert (far <= near).all() and (far[near > 0] < near[near > 0]).any()  # a back surface behind the front one
    assert torch.allclose(density.amax(dim=(1, 2)), torch.ones(3))
    assert adapter.preview(out, channels="near+far+density").startswith(b"\x89PNG")


def test_far_and_density_on_two_points_in_one_pixel() -> None:
    """Front view: two points on one ray (near and far differ, density 1) and one alone (density 1/2)."""
    unit = normalize_points(np.array([[0.0, 0.0, 0.5], [0.0, 0.0, -0.5], [1.0, 1.0, 1.0]]))
    views = project_views(unit, 4, ("near", "far", "density"))
    near, far, density = views[0], views[3], views[6]
    shared = density == 1.0
    assert int(shared.sum()) == 1 and int((density == 0.5).sum()) == 1
    assert abs(float(near[shared]) - (unit[0, 2] + 2) / 3) < 1e-6
    assert abs(float(far[shared]) - (unit[1, 2] + 2) / 3) < 1e-6
    alone = density == 0.5
    assert float(near[alone]) == float(far[alone]) > 0


def test_params_default_to_the_historical_map(media) -> None:
    adapter = get_adapter("pointcloud")
    data = media.npy(media.cloud(500))
    historical = {**SMALL, "pose": "as_given", "channels": "near", "rotation": "up", "splat": 0}
    assert torch.equal(adapter.decode(data, **SMALL), adapter.decode(data, **historical))


def test_training_picks_the_pose_from_the_data_unless_the_run_sets_it() -> None:
    adapter = get_adapter("pointcloud")
    rng = np.random.default_rng(0)
    standing = [normalize_points(rng.normal(size=(300, 3)) * (0.3, 1.0, 0.6)) for _ in range(8)]
    tumbling = [cloud @ _rotation(seed).T for seed, cloud in enumerate(standing)]
    as_tensors = lambda clouds: [torch.from_numpy(c) for c in clouds]  # noqa: E731
    fit = adapter.fit_training_params
    splat = {"splat": TRAINING_SPLAT}
    assert fit(as_tensors(standing), {}, {}) == {"pose": "as_given", "rotation": "up", **splat}
    assert fit(as_tensors(tumbling), {}, {}) == {"pose": "canonical", "rotation": "so3", **splat}
    upright = {"pose": "upright"}
    assert fit(as_tensors(tumbling), upright, upright) == {"pose": "upright", "rotation": "up", **splat}
    assert fit(as_tensors(standing), {"rotation": "none"}, {"rotation": "none"}) == {
        "rotation": "none",
        "pose": "as_given",
        **splat,
    }
    assert fit(as_tensors(standing), {"splat": 0}, {"splat": 0})["splat"] == 0


def _sphere_surface(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_splatted_points_make_two_samplings_of_a_surface_agree() -> None:
    """A pixel per point: two samplings of one sphere share few lit pixels; drawn as squares the size of the gaps
    between points, the same surface lights nearly the same pixels, at any point count."""
    overlap = {}
    for splat in (0.0, TRAINING_SPLAT):
        for n in (200, 2000):
            a, b = (views_of(_sphere_surface(n, seed), 128, splat=splat)[0] > 0 for seed in (1, 2))
            overlap[splat, n] = float((a & b).sum() / (a | b).sum())
    assert overlap[0.0, 200] < 0.2 and overlap[0.0, 2000] < 0.5, overlap
    assert min(overlap[TRAINING_SPLAT, 200], overlap[TRAINING_SPLAT, 2000]) > 0.8, overlap


def test_splat_size_follows_the_gaps_between_points() -> None:
    sphere = _sphere_surface(400, 0)
    assert splat_radius(sphere, 224, 0.0) == 0
    assert splat_radius(sphere, 224, 1.0) == round(224 / 20) == 11
    assert splat_radius(np.repeat(sphere, 5, axis=0), 224, 1.0) == 11  # repeated points are not more surface
    assert splat_radius(sphere[:4], 224, 1.0) == 224 // 16  # a handful of points: capped, not the whole view


def test_splatted_views_keep_the_nearest_depth_and_the_farthest() -> None:
    """Front view of 16 pixels, radius 1: a near point in column 8 and a far one in column 9 (row 8 both). Where
    their squares overlap (columns 8-9) the near depth wins in ``near``, the far one in ``far``, and the density
    counts both."""
    unit = np.array([[0.0, 0.0, 0.9], [2.5 / 16, 0.0, -0.9]])
    near_depth, far_depth = (0.9 + 2) / 3, (-0.9 + 2) / 3
    views = project_views(unit, 16, ("near", "far", "density"), radius=1)
    near, far, density = views[0][8, 6:12], views[3][8, 6:12], views[6][8, 6:12]  # columns 6 to 11
    expected_near = torch.tensor([0, near_depth, near_depth, near_depth, far_depth, 0])
    expected_far = torch.tensor([0, near_depth, far_depth, far_depth, far_depth, 0])
    assert torch.allclose(near, expected_near.float()) and torch.allclose(far, expected_far.float())
    assert torch.allclose(density, torch.tensor([0, 0.5, 1, 1, 0.5, 0]))
    assert torch.equal(views[0][[6, 10]], torch.zeros(2, 16))  # rows beyond the squares stay empty
    assert int((views[0] > 0).sum()) == 3 * 4  # rows 7-9, columns 7-10


def test_splatted_map_keeps_the_promised_invariances() -> None:
    """Point order changes nothing with squares either, and repeated points change no depth (the square's size
    counts distinct points; density counts every point, as without squares)."""
    cloud = _sphere_surface(300, 3) * (1.0, 0.5, 0.3)
    order = np.random.default_rng(0).permutation(len(cloud))
    kinds = "near+far+density"
    assert torch.equal(
        views_of(cloud, 64, "canonical", kinds, 0.75), views_of(cloud[order], 64, "canonical", kinds, 0.75)
    )
    padded = np.concatenate([cloud, cloud[:50]])
    assert torch.equal(
        views_of(cloud, 64, "canonical", "near+far", 0.75), views_of(padded, 64, "canonical", "near+far", 0.75)
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"pose": "sideways"},
        {"channels": "near+near"},
        {"channels": ""},
        {"rotation": "x"},
        {"splat": -0.5},
        {"splat": 5},
        {"splat": "big"},
        {"splat": True},
    ],
)
def test_bad_map_params_are_refused(bad) -> None:
    from unirep_errors import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        get_adapter("pointcloud").resolve_params(**bad)
