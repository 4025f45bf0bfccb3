"""Preprocessing: colour handling, resize/crop geometry and exact normalisation values."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sadh.sdk.errors import SadhError
from sadh.sdk.preprocess import Preprocess, as_frames, center_crop, fit_square, normalize, preprocess, to_rgb

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.3, 0.25)  # a model's own (Preprocess has no default)


def test_bgr_gray_bgra_to_rgb() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    assert to_rgb(bgr)[0, 0].tolist() == [0, 0, 10]
    assert to_rgb(np.full((2, 2), 7, np.uint8))[0, 0].tolist() == [7, 7, 7]
    assert to_rgb(np.full((2, 2, 1), 7, np.uint8)).shape == (2, 2, 3)
    bgra = np.concatenate([bgr, np.full((2, 2, 1), 255, np.uint8)], axis=2)
    assert to_rgb(bgra)[0, 0].tolist() == [0, 0, 10]


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.float32), np.zeros((2, 2, 2), np.uint8), np.zeros((0, 3), np.uint8), [1, 2]])
def test_to_rgb_rejects(bad) -> None:
    with pytest.raises(SadhError):
        to_rgb(bad)


def test_fit_square_geometry() -> None:
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the centre square of a wide image
    out = fit_square(img, 20)
    assert out.shape == (20, 20, 3) and out.min() == 255  # kept the centre, dropped the sides


@pytest.mark.parametrize("shape", [(10, 1000, 3), (1000, 10, 3), (3, 700)])
def test_fit_square_crops_an_elongated_frame_first_with_the_same_centre(shape) -> None:
    yy, xx = np.indices(shape[:2])
    img = np.broadcast_to(((xx + 2 * yy) % 256).astype(np.uint8)[..., None], shape) if len(shape) == 3 else (xx % 256).astype(np.uint8)
    h, w = shape[:2]
    scale = 32 / min(h, w)
    whole = to_rgb(img)  # the plain pipeline: resize the whole frame, then crop its centre
    whole = center_crop(cv2.resize(whole, (max(32, round(w * scale)), max(32, round(h * scale))), interpolation=cv2.INTER_LINEAR), 32)
    got = fit_square(img, 32)
    assert got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - whole.astype(int)).mean() < 1.0  # the same pixels, up to sub-pixel rounding


def test_fit_square_shrinks_by_area_and_enlarges_linearly() -> None:
    yy, xx = np.indices((200, 300))
    checker = (((yy // 3 + xx // 3) % 2) * 255).astype(np.uint8)  # fine texture: the interpolation shows
    rgb = to_rgb(checker)
    assert np.array_equal(fit_square(checker, 32), center_crop(cv2.resize(rgb, (48, 32), interpolation=cv2.INTER_AREA), 32))
    small = checker[:10, :15]
    assert np.array_equal(fit_square(small, 32), center_crop(cv2.resize(to_rgb(small), (48, 32), interpolation=cv2.INTER_LINEAR), 32))


@pytest.mark.parametrize("shape, size", [((4, 33), 32), ((4, 35), 32), ((100, 901), 224), ((3, 24), 32)])
def test_the_pre_crop_keeps_the_centre(shape, size) -> None:
    yy, xx = np.indices(shape)
    img = ((xx * 7 + yy) % 256).astype(np.uint8)  # steep: a shift of half a source pixel shows
    h, w = shape
    scale = size / min(h, w)
    whole = cv2.resize(to_rgb(img), (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_LINEAR)
    assert np.abs(fit_square(img, size).astype(int) - center_crop(whole, size).astype(int)).mean() < 1.0


def test_fit_square_of_a_one_pixel_strip_stays_small(monkeypatch) -> None:
    strip = np.zeros((1, 1_000_000), np.uint8)
    strip[0, 499_990:500_010] = 200  # the centre
    sizes = []
    resize = cv2.resize
    monkeypatch.setattr(cv2, "resize", lambda img, size, **kw: sizes.append(size) or resize(img, size, **kw))
    out = fit_square(strip, 32)  # resizing the whole strip would take 32 x 32,000,000 x 3 bytes (3 GB)
    assert sizes == [(8 * 32, 32)]
    assert out.shape == (32, 32, 3) and (out == 200).all()  # the centre 8 pixels, enlarged


def test_center_crop_batch() -> None:
    x = np.arange(5 * 5).reshape(1, 5, 5, 1)
    assert center_crop(x, 3)[0, :, :, 0].tolist() == [[6, 7, 8], [11, 12, 13], [16, 17, 18]]
    with pytest.raises(SadhError, match="cannot crop"):
        center_crop(x, 6)


def test_normalize_exact_values() -> None:
    img = np.array([[[[0, 51, 255]]]], np.uint8)  # one RGB pixel
    out = normalize(img, mean=(0.0, 0.1, 0.5), std=(1.0, 0.5, 0.25))
    assert out.shape == (1, 3, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, (0.2 - 0.1) / 0.5, (1.0 - 0.5) / 0.25], rtol=1e-6)


def test_preprocess_matches_a_hand_written_pipeline_pixel_for_pixel() -> None:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)  # already resize_size: only the crop and the arithmetic act
    cfg = Preprocess(input_size=24, resize_size=30, mean=MEAN, std=STD)
    out = preprocess(bgr, cfg)[0]
    rgb = bgr[3:27, 3:27, ::-1].astype(np.float64) / 255  # the centre 24 x 24, channels reversed
    expected = ((rgb - np.array(cfg.mean)) / np.array(cfg.std)).transpose(2, 0, 1)  # C, y, x: rows stay rows
    assert out.shape == (3, 24, 24)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_preprocess_batch_and_single() -> None:
    cfg = Preprocess(input_size=8, resize_size=10, mean=MEAN, std=STD)
    frames = [np.zeros((30, 20, 3), np.uint8), np.full((12, 12), 255, np.uint8)]
    out = preprocess(frames, cfg)
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, :, 0, 0], (1 - np.array(cfg.mean)) / np.array(cfg.std), rtol=1e-6)
    assert preprocess(frames[0], cfg).shape == (1, 3, 8, 8)
    assert preprocess(np.zeros((4, 28, 28), np.uint8), cfg).shape == (4, 3, 8, 8)
    with pytest.raises(SadhError, match="no images"):
        preprocess([], cfg)


def test_preprocess_config_round_trip_and_errors() -> None:
    cfg = Preprocess(input_size=224, resize_size=256, mean=MEAN, std=STD)
    assert Preprocess.from_json(cfg.to_json()) == cfg
    with pytest.raises(SadhError, match="bad preprocessing sizes"):
        Preprocess(input_size=32, resize_size=16, mean=MEAN, std=STD)
    with pytest.raises(TypeError, match="mean"):
        Preprocess(input_size=224, resize_size=256)  # no silent ImageNet mean/std: they are the model's
    with pytest.raises(SadhError, match="bad preprocessing metadata"):
        Preprocess.from_json('{"input_size": 3}')
    nan, inf = float("nan"), float("inf")
    for mean, std in (((0, 0, 0), (nan, 1, 1)), ((0, 0, 0), (0, 1, 1)), ((0, 0, 0), (-1, 1, 1)), ((inf, 0, 0), (1, 1, 1))):
        with pytest.raises(SadhError, match="mean/std"):
            Preprocess(input_size=8, resize_size=10, mean=mean, std=std)
    with pytest.raises(SadhError, match="bad preprocessing metadata"):
        Preprocess.from_json('{"input_size": Infinity, "resize_size": 10, "mean": [0, 0, 0], "std": [1, 1, 1]}')


def test_as_frames_shapes() -> None:
    shapes = ((5, 6), (5, 6, 1), (5, 6, 4), (4, 9, 9), (2, 5, 6, 3))
    assert [len(as_frames(np.zeros(shape, np.uint8))) for shape in shapes] == [1, 1, 1, 4, 2]
    for shape in ((28, 28, 2), (28, 28, 5), (28, 28, 7), (28,), (1, 1, 5, 5, 3)):
        with pytest.raises(SadhError, match="expected a frame"):
            as_frames(np.zeros(shape, np.uint8))
    with pytest.raises(SadhError, match="NoneType"):
        as_frames(None)
    cfg = Preprocess(input_size=8, resize_size=10, mean=MEAN, std=STD)
    narrow = np.arange(30, dtype=np.uint8).reshape(10, 3) * 8  # one 10x3 gray frame: its slices stay gray frames
    np.testing.assert_array_equal(preprocess(as_frames(narrow)[:1], cfg), preprocess([narrow], cfg))
