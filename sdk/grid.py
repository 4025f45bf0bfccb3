"""Retrieval grid image (OpenCV): one row per query, its top results beside it, green/red borders for relevant/irrelevant."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .errors import SadhError
from .preprocess import fit_square

RELEVANT_BGR = (0, 200, 0)
IRRELEVANT_BGR = (0, 0, 230)
QUERY_BGR = (230, 120, 0)
BORDER = 4
GAP = 12
CAPTION_CHARS = 10  # caption characters that fit on a tile of the default 72 pixels


def _tile(image: np.ndarray, size: int, color: tuple[int, int, int], caption: str) -> np.ndarray:
    """A BGR size x size tile of `image` inside a coloured border, with a caption at the top."""
    rgb = fit_square(image, size - 2 * BORDER)
    tile = np.empty((size, size, 3), np.uint8)
    tile[:] = color
    tile[BORDER:-BORDER, BORDER:-BORDER] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if caption:
        cv2.putText(tile, caption[:CAPTION_CHARS], (BORDER + 1, BORDER + 9), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 255, 255), 1, cv2.LINE_AA)
    return tile


def retrieval_grid(
    queries: Sequence[np.ndarray],
    results: Sequence[Sequence[np.ndarray]],
    relevant: np.ndarray,
    captions: Sequence[Sequence[str]] | None = None,
    tile: int = 72,
) -> np.ndarray:
    """BGR uint8 grid: row i = query i (blue border), then its results (green: relevant, red: not).

    `results[i]` are the frames of query i's neighbours in rank order; `relevant[i, j]` says whether the
    j-th is relevant; `captions[i]` (optional) holds one caption for the query then one per result.
    """
    if len(queries) == 0 or len(queries) != len(results):
        raise SadhError(f"need one result list per query, got {len(queries)} queries and {len(results)} lists")
    width = max(len(r) for r in results)
    if tile < 2 * BORDER + 8:
        raise SadhError(f"tile size {tile} is too small (need at least {2 * BORDER + 8})")
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape[0] != len(queries) or relevant.shape[1] < width:
        raise SadhError(f"relevance mask of shape {relevant.shape} does not cover {len(queries)} x {width} results")
    rows = []
    for i, (query, found) in enumerate(zip(queries, results)):
        caps = list(captions[i]) if captions is not None else [""] * (len(found) + 1)
        row = np.full((tile, tile + GAP + width * tile, 3), 255, np.uint8)
        row[:, :tile] = _tile(query, tile, QUERY_BGR, caps[0])
        for j, image in enumerate(found):
            color = RELEVANT_BGR if relevant[i, j] else IRRELEVANT_BGR
            x = tile + GAP + j * tile
            row[:, x : x + tile] = _tile(image, tile, color, caps[j + 1])
        rows.append(row)
    spacer = np.full((BORDER, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([part for row in rows for part in (row, spacer)][:-1])


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a BGR/gray uint8 image."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise SadhError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()
