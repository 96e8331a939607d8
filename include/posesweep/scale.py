"""Image scale (px per mm) for reporting errors in mm.

Two sources, in this order:

1. the ``px_per_mm`` run parameter, when the lab knows its scale;
2. the study's 61 x 61 cm landing square, when the cohort says where its taped
   corners are in the image. ``cohort.json`` holds ``"landing_square"``:
   ``{"corners_px": [[x, y], [x, y], [x, y], [x, y]], "side_mm": 610}`` for the
   whole cohort, and ``"landing_square_by_video"``: ``{"<video stem>": {...}}``
   where the camera moved between sessions.

The frontal camera sees the square as a trapezoid: its near edge is wider in
the image than its far edge. The participant lands in the middle of the square,
and for a pinhole camera the image width of a length at the middle depth is the
harmonic mean of its widths at the near and far depths (width ~ 1 / depth). So
``px_per_mm = harmonic_mean(near edge px, far edge px) / side_mm``. It holds in
the frontal plane through the square's centre; landmarks in front of or behind
that plane are scaled with a small error, as with any single-camera 2D scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ScaleError

LANDING_SQUARE_SIDE_MM = 610.0


@dataclass(frozen=True)
class LandingSquare:
    corners_px: tuple[tuple[float, float], ...]
    side_mm: float = LANDING_SQUARE_SIDE_MM

    @classmethod
    def from_json(cls, entry: dict, where: str) -> LandingSquare:
        if not isinstance(entry, dict) or "corners_px" not in entry:
            raise ScaleError(f"{where}: a landing square needs 'corners_px' (four [x, y] image points)")
        try:
            corners = tuple((float(x), float(y)) for x, y in entry["corners_px"])
            side_mm = float(entry.get("side_mm", LANDING_SQUARE_SIDE_MM))
        except (TypeError, ValueError) as error:
            raise ScaleError(f"{where}: corners_px must be four [x, y] pairs of numbers ({error})") from None
        if len(corners) != 4:
            raise ScaleError(f"{where}: corners_px has {len(corners)} points, a square has 4")
        if not side_mm > 0:
            raise ScaleError(f"{where}: side_mm must be positive, got {side_mm}")
        square = cls(corners, side_mm)
        far, near = square.edges()
        if not _is_convex(square.ordered()):
            raise ScaleError(f"{where}: the corners {list(corners)} do not outline a convex quadrilateral")
        if min(far, near) <= 0:
            raise ScaleError(f"{where}: the landing square has an edge of zero width")
        return square

    def ordered(self) -> np.ndarray:
        """Corners as far-left, far-right, near-right, near-left (far = smaller y, higher in the image)."""
        points = np.array(self.corners_px)
        by_y = points[np.argsort(points[:, 1], kind="stable")]
        far = by_y[:2][np.argsort(by_y[:2, 0])]
        near = by_y[2:][np.argsort(by_y[2:, 0])]
        return np.array([far[0], far[1], near[1], near[0]])

    def edges(self) -> tuple[float, float]:
        """Widths in px of the far and the near edge."""
        fl, fr, nr, nl = self.ordered()
        return float(np.hypot(*(fr - fl))), float(np.hypot(*(nr - nl)))

    def px_per_mm(self) -> float:
        far, near = self.edges()
        return 2.0 / (1.0 / far + 1.0 / near) / self.side_mm


def _is_convex(polygon: np.ndarray) -> bool:
    crosses = []
    for i in range(len(polygon)):
        a, b, c = polygon[i], polygon[(i + 1) % len(polygon)], polygon[(i + 2) % len(polygon)]
        crosses.append(np.cross(b - a, c - b))
    crosses = np.array(crosses)
    return bool(np.all(crosses > 0) or np.all(crosses < 0))


@dataclass(frozen=True)
class VideoScales:
    """px per mm for each video stem, and where the numbers come from."""

    px_per_mm: dict[str, float]
    source: str  # "parameter" | "landing square" | "none"

    def to_json_dict(self) -> dict:
        return {"source": self.source, "px_per_mm": self.px_per_mm}


def video_scales(video_stems: list[str], px_per_mm_param: float, manifest: dict | None,
                 manifest_path: str = "cohort.json", known_stems: list[str] | None = None) -> VideoScales:
    """Scale per video: the run parameter if set, else the cohort's landing square(s), else none. A video named in
    ``landing_square_by_video`` must be one of ``known_stems`` (default: ``video_stems``): a typo fails here."""
    if px_per_mm_param > 0:
        return VideoScales({stem: float(px_per_mm_param) for stem in video_stems}, "parameter")
    manifest = manifest or {}
    default = manifest.get("landing_square")
    by_video = manifest.get("landing_square_by_video") or {}
    unknown = sorted(set(by_video) - set(video_stems if known_stems is None else known_stems))
    if unknown:
        raise ScaleError(f"{manifest_path}: landing_square_by_video names videos the cohort does not have: {unknown}")
    if default is None and not by_video:
        return VideoScales({}, "none")
    scales = {}
    for stem in video_stems:
        entry = by_video.get(stem, default)
        if entry is None:
            raise ScaleError(f"{manifest_path}: no landing square for video {stem!r} (and no cohort-wide "
                             f"'landing_square')")
        where = f"{manifest_path}: landing square of video {stem!r}" if stem in by_video else \
            f"{manifest_path}: landing_square"
        scales[stem] = LandingSquare.from_json(entry, where).px_per_mm()
    return VideoScales(scales, "landing square")
