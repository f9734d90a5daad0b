"""A dependency-free PNG drawing of a weighted graph (NumPy rasteriser + zlib encoder).

``flsim topology show --plot`` prefers matplotlib, then plotly + kaleido; neither is a
dependency of flsim, so this module is the last resort that always works: anti-aliased
segments whose width is proportional to |w_ij| (blue for positive, red for the negative
weights FDLA may produce, docs/algorithms.md G4), nodes as outlined discs, no text (the title
goes into a PNG ``tEXt`` chunk). It is meant for graphs up to a few hundred nodes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

POSITIVE = np.array([31.0, 119.0, 180.0])  # matplotlib's tab:blue
NEGATIVE = np.array([214.0, 39.0, 40.0])  # tab:red
NODE_FILL = np.array([255.0, 255.0, 255.0])
NODE_EDGE = np.array([0.0, 0.0, 0.0])


def _blend(canvas: np.ndarray, rows: slice, cols: slice, coverage: np.ndarray, color: np.ndarray) -> None:
    """canvas ← (1 − coverage)·canvas + coverage·color on a window, coverage ∈ [0, 1]."""
    window = canvas[rows, cols]
    window += coverage[..., None] * (color - window)


def _segment(canvas: np.ndarray, p: np.ndarray, q: np.ndarray, width: float, color: np.ndarray) -> None:
    """An anti-aliased segment: coverage = clip(width/2 + ½ − distance, 0, 1) per pixel centre."""
    height, wide = canvas.shape[:2]
    pad = width / 2 + 1
    r0, r1 = int(max(0, np.floor(min(p[1], q[1]) - pad))), int(min(height, np.ceil(max(p[1], q[1]) + pad)))
    c0, c1 = int(max(0, np.floor(min(p[0], q[0]) - pad))), int(min(wide, np.ceil(max(p[0], q[0]) + pad)))
    if r0 >= r1 or c0 >= c1:
        return
    ys, xs = np.mgrid[r0:r1, c0:c1] + 0.5
    direction = q - p
    length2 = float(direction @ direction)
    if length2 == 0:
        t = np.zeros_like(xs)
    else:
        t = np.clip(((xs - p[0]) * direction[0] + (ys - p[1]) * direction[1]) / length2, 0.0, 1.0)
    distance = np.hypot(xs - (p[0] + t * direction[0]), ys - (p[1] + t * direction[1]))
    _blend(canvas, slice(r0, r1), slice(c0, c1), np.clip(width / 2 + 0.5 - distance, 0.0, 1.0), color)


def _disc(canvas: np.ndarray, centre: np.ndarray, radius: float, color: np.ndarray) -> None:
    height, wide = canvas.shape[:2]
    r0, r1 = int(max(0, centre[1] - radius - 1)), int(min(height, centre[1] + radius + 2))
    c0, c1 = int(max(0, centre[0] - radius - 1)), int(min(wide, centre[0] + radius + 2))
    if r0 >= r1 or c0 >= c1:
        return
    ys, xs = np.mgrid[r0:r1, c0:c1] + 0.5
    distance = np.hypot(xs - centre[0], ys - centre[1])
    _blend(canvas, slice(r0, r1), slice(c0, c1), np.clip(radius + 0.5 - distance, 0.0, 1.0), color)


def encode_png(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """8-bit RGB PNG bytes of an (H, W, 3) array, filter type 0 on every row."""
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    height, width = image.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), image.reshape(height, width * 3)], axis=1)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        parts.append(chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    parts += [chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), chunk(b"IEND", b"")]
    return b"".join(parts)


def draw_graph_png(
    positions: dict[int, tuple[float, float]],
    edges: Sequence[tuple[int, int]],
    weights: Sequence[float],
    path: str | Path,
    *,
    size: int = 800,
    title: str = "",
) -> Path:
    """Write the graph to ``path``: edge widths 0.5-6 px ∝ |weight|, sign by colour."""
    canvas = np.full((size, size, 3), 255.0)
    nodes = sorted(positions)
    coords = np.array([positions[i] for i in nodes], dtype=np.float64).reshape(-1, 2)
    margin = 0.06 * size
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    pixel = {
        node: np.array(
            [
                margin + (x - low[0]) / span[0] * (size - 2 * margin),
                size - margin - (y - low[1]) / span[1] * (size - 2 * margin),
            ]
        )
        for node, (x, y) in zip(nodes, coords, strict=True)
    }
    magnitudes = np.abs(np.asarray(weights, dtype=np.float64))
    top = float(magnitudes.max()) if magnitudes.size and magnitudes.max() > 0 else 1.0
    for (i, j), weight, magnitude in zip(edges, weights, magnitudes, strict=True):
        colour = NEGATIVE if weight < 0 else POSITIVE
        _segment(canvas, pixel[i], pixel[j], 0.5 + 5.5 * magnitude / top, colour)
    radius = float(np.clip(size / (4 * np.sqrt(max(len(nodes), 1))), 2.0, 9.0))
    for node in nodes:
        _disc(canvas, pixel[node], radius + 1.2, NODE_EDGE)
        _disc(canvas, pixel[node], radius, NODE_FILL)
    target = Path(path)
    target.write_bytes(encode_png(canvas, {"Title": title} if title else None))
    return target
