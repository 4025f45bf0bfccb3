"""Reading image files into BGR/gray uint8 arrays, with one-line errors."""
from __future__ import annotations

import os

import numpy as np

from ..errors import SadhError
from ..extras import require
from ..image_limits import MAX_PIXELS_ENV, header_size, max_image_pixels


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as OpenCV does (BGR, or gray for 1-channel files); clear error if unreadable."""
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except FileNotFoundError:
        raise SadhError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise SadhError(f"{path}: is a directory, not an image file") from None
    except OSError as e:
        raise SadhError(f"{path}: cannot read image file ({e.strerror})") from None
    limit = max_image_pixels()
    size = header_size(memoryview(data))
    if size is not None and size[0] * size[1] > limit:
        raise SadhError(
            f"{path}: a {size[0]} x {size[1]} image is over the limit of {limit} pixels per decoded image "
            f"({MAX_PIXELS_ENV}); it was not decoded"
        )
    cv2 = require("cv2")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # OpenCV refuses a header over its limit (set from the same variable) by raising
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            raise SadhError(f"{path}: the image is over the limit of {limit} pixels per decoded image ({MAX_PIXELS_ENV}); "
                            "it was not decoded") from None
        raise SadhError(f"{path}: not a readable image (OpenCV: {e.err})") from None
    if image is None:
        raise SadhError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image
