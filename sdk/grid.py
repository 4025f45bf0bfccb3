"""Image grids (OpenCV): the retrieval grid and the dataset preview, with the captioned tiles they share.

Retrieval grid: a legend on top, then one row per query: the query (blue border), then its results in rank order
(green border: shares a label with the query, red: shares none), each above a white band with its Hamming
distance and its label names in full (wrapped, never cut).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import SadhError
from .extras import require
from .preprocess import fit_square

if TYPE_CHECKING:
    from .data import LabeledImages

RELEVANT_BGR = (0, 200, 0)
IRRELEVANT_BGR = (0, 0, 230)
QUERY_BGR = (230, 120, 0)
TEXT_BGR = (0, 0, 0)
WHITE = 255
BORDER = 4
GAP = 12
PREVIEW_TILE = 96  # preview tile size in pixels; the label names go in a band below the tiles
FONT_SCALE, LINE_HEIGHT = 0.7, 12  # scale of the caption font (OpenCV's FONT_HERSHEY_PLAIN), pixels per line
LEGEND = (("query", QUERY_BGR), ("shares a label with the query", RELEVANT_BGR), ("shares none", IRRELEVANT_BGR))


def _font():
    """OpenCV (imported on first use, see sdk/extras.py) and its caption font."""
    cv2 = require("cv2")
    return cv2, cv2.FONT_HERSHEY_PLAIN


def text_width(text: str) -> int:
    """Width in pixels of `text` in the caption font."""
    cv2, font = _font()
    return cv2.getTextSize(text, font, FONT_SCALE, 1)[0][0]


def put_text(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    """Draw `text` in the caption font, its baseline starting at `origin` (x, y)."""
    cv2, font = _font()
    cv2.putText(image, text, origin, font, FONT_SCALE, TEXT_BGR, 1, cv2.LINE_AA)


def wrap_caption(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` pixels: broken at spaces, inside a word only where it alone is too wide."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and text_width(f"{line} {word}") <= width:
            line = f"{line} {word}"
            continue
        if line:
            lines.append(line)
            line = ""
        for char in word:
            if line and text_width(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    return lines + [line]


def band_height(captions: Sequence[Sequence[str]]) -> int:
    """Pixels of caption band that fit the longest of these captions (lists of lines); 0 when none has a line."""
    most = max((len(lines) for lines in captions), default=0)
    return most * LINE_HEIGHT + 4 if most else 0


def captioned_tile(image: np.ndarray, size: int, lines: Sequence[str], band: int, color: tuple[int, int, int] | None = None) -> np.ndarray:
    """A BGR tile `size` wide: `image` fitted to size x size (inside a `color` border when given), above a white
    band `band` pixels high that holds `lines`."""
    edge = BORDER if color is not None else 0
    tile = np.full((size + band, size, 3), WHITE, np.uint8)
    if color is not None:
        tile[:size] = color
    cv2 = require("cv2")
    tile[edge : size - edge, edge : size - edge] = cv2.cvtColor(fit_square(image, size - 2 * edge), cv2.COLOR_RGB2BGR)
    for row, line in enumerate(lines, 1):
        put_text(tile, line, (2, size + row * LINE_HEIGHT))
    return tile


def legend_strip(width: int, title: str | None) -> np.ndarray:
    """A white strip `width` wide: the title (if any) over the colour key of the retrieval grid."""
    lines = 2 if title else 1
    strip = np.full((lines * (LINE_HEIGHT + 4) + 4, width, 3), WHITE, np.uint8)
    y = LINE_HEIGHT
    if title:
        put_text(strip, title, (2, y))
        y += LINE_HEIGHT + 4
    x = 2
    for name, color in LEGEND:
        require("cv2").rectangle(strip, (x, y - 9), (x + 9, y), color, -1)
        put_text(strip, name, (x + 13, y))
        x += 13 + text_width(name) + 16
    return strip


def retrieval_grid(
    queries: Sequence[np.ndarray],
    results: Sequence[Sequence[np.ndarray]],
    relevant: np.ndarray,
    captions: Sequence[Sequence[str]] | None = None,
    tile: int = 96,
    *,
    distances: Sequence[Sequence[int]] | None = None,
    title: str | None = None,
) -> np.ndarray:
    """BGR uint8 grid: a legend, then row i = query i (blue border) and its results (green: relevant, red: not).

    `results[i]` are the frames of query i's neighbours in rank order; `relevant[i, j]` says whether the j-th is
    relevant; `captions[i]` (optional) holds the label text of the query then of each result, `distances[i]`
    (optional) the Hamming distance of each result; `title` goes above the legend.
    """
    if len(queries) == 0 or len(queries) != len(results):
        raise SadhError(f"need one result list per query, got {len(queries)} queries and {len(results)} lists")
    width = max(len(r) for r in results)
    if tile < 2 * BORDER + 8:
        raise SadhError(f"tile size {tile} is too small (need at least {2 * BORDER + 8})")
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape[0] != len(queries) or relevant.shape[1] < width:
        raise SadhError(f"relevance mask of shape {relevant.shape} does not cover {len(queries)} x {width} results")
    for name, rows, extra in (("captions", captions, 1), ("distances", distances, 0)):
        if rows is not None and [len(r) for r in rows] != [len(found) + extra for found in results]:
            raise SadhError(f"{name} must hold {'one for the query, then ' if extra else ''}one per result of each query")
    lines = [
        [
            ([f"d={distances[i][j - 1]}"] if distances is not None and j else [])
            + (wrap_caption(captions[i][j], tile - 4) if captions is not None and captions[i][j] else [])
            for j in range(len(found) + 1)
        ]
        for i, found in enumerate(results)
    ]
    band = band_height([item for row in lines for item in row])
    rows = []
    for i, (query, found) in enumerate(zip(queries, results)):
        row = np.full((tile + band, tile + GAP + width * tile, 3), WHITE, np.uint8)
        row[:, :tile] = captioned_tile(query, tile, lines[i][0], band, QUERY_BGR)
        for j, image in enumerate(found):
            color = RELEVANT_BGR if relevant[i, j] else IRRELEVANT_BGR
            x = tile + GAP + j * tile
            row[:, x : x + tile] = captioned_tile(image, tile, lines[i][j + 1], band, color)
        rows.append(row)
    spacer = np.full((BORDER, rows[0].shape[1], 3), WHITE, np.uint8)
    return np.vstack([legend_strip(rows[0].shape[1], title), *[part for row in rows for part in (row, spacer)][:-1]])


def preview_grid(data: LabeledImages, items: Sequence[int], tile: int = PREVIEW_TILE) -> np.ndarray:
    """A square grid of the images of `data` (LabeledImages) `items`, each above its label names (wrapped, never cut);
    white tiles fill the last rows."""
    captions = [wrap_caption(", ".join(data.class_names[c] for c in np.flatnonzero(data.labels[i])), tile - 4) for i in items]
    band = band_height(captions)
    tiles = [captioned_tile(data.image(i), tile, lines, band) for i, lines in zip(items, captions)]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    tiles += [np.full_like(tiles[0], WHITE)] * (cols * cols - len(tiles))
    return np.vstack([np.hstack(tiles[r * cols : (r + 1) * cols]) for r in range(cols)])


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a BGR/gray uint8 image."""
    ok, buf = require("cv2").imencode(".png", image)
    if not ok:
        raise SadhError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()
