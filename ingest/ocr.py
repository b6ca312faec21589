"""OCR of page images with RapidOCR (PP-OCRv4 Chinese/English detection and recognition, ONNX Runtime).

Why RapidOCR: the ``rapidocr-onnxruntime`` wheel ships the three ONNX models (text detection,
recognition with its character table inside the model, and the 0/180 degree line classifier), so
reading a scan needs no download and no network; it reads simplified and traditional Chinese and
English; Apache-2.0. The engine loads lazily, once per process (about a second), and only when a
document actually needs OCR, so text documents never pay for it.

Pages come out upright whatever way they were scanned: a page whose text lines stand vertical is
turned a quarter, and the line classifier then says whether it is upside down (most lines read 180
degrees), in which case it is turned over and read again. Slight skew needs nothing: detection
returns rotated boxes and each line is straightened before it is read.

Detection runs on a copy whose long side is ``DET_SIDE`` pixels (a 200 dpi A4 page is 2339): on two
cores that halves the time per page and loses nothing at body-text sizes; lines are cut from the full
resolution image for recognition.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

ENGINE_NAME = "RapidOCR PP-OCRv4"
DET_SIDE = 1280  # long side of the image detection sees
MIN_SCORE = 0.5  # recognition confidence below which a line is dropped (RapidOCR's default)

_LOCK = threading.Lock()
_ENGINE = None


@dataclass
class OcrPage:
    text: str
    lines: int
    score: float  # mean recognition confidence of the kept lines (0 when none)
    angle: int  # degrees the page was turned (counter-clockwise) to read it upright
    seconds: float


def _engine():
    """The RapidOCR engine of this process, built on first use from the models inside its wheel."""
    global _ENGINE
    if _ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        t = time.perf_counter()
        _ENGINE = RapidOCR()
        log.info("OCR engine (%s) loaded in %.1fs", ENGINE_NAME, time.perf_counter() - t)
    return _ENGINE


def available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def read(image) -> OcrPage:
    """Text of one page image (a PIL image), lines in reading order, turned upright first."""
    t = time.perf_counter()
    arr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # RapidOCR works in BGR
    with _LOCK:  # one page at a time per process: ONNX Runtime already uses every core for it
        eng = _engine()
        angle, boxes, crops = _upright(eng, arr)
        if not crops:
            return OcrPage("", 0, 0.0, angle, time.perf_counter() - t)
        crops, _cls, _ = eng.text_cls(crops)
        rec, _ = eng.text_rec(crops)
    kept = [(box, text.strip(), float(score)) for box, (text, score, *_rest) in zip(boxes, rec, strict=True)
            if float(score) >= MIN_SCORE and text.strip()]
    text = _layout(kept)
    mean = sum(s for _, _, s in kept) / len(kept) if kept else 0.0
    return OcrPage(text, len(kept), mean, angle, time.perf_counter() - t)


def _detect(eng, arr: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import cv2

    h, w = arr.shape[:2]
    scale = min(1.0, DET_SIDE / max(h, w))
    small = arr if scale == 1.0 else cv2.resize(arr, (round(w * scale), round(h * scale)),
                                                interpolation=cv2.INTER_AREA)
    boxes, _ = eng.text_det(small)
    if boxes is None or len(boxes) == 0:
        return [], []
    boxes = (np.asarray(boxes, dtype=np.float32) / scale).astype(np.float32)
    boxes = eng.sorted_boxes(boxes)
    return boxes, eng.get_crop_img_list(arr, boxes)


def _vertical_share(boxes: list[np.ndarray]) -> float:
    """Share of detected lines that stand upright (taller than wide): a page lying on its side."""
    if not boxes:
        return 0.0
    tall = 0
    for b in boxes:
        w = max(np.linalg.norm(b[0] - b[1]), np.linalg.norm(b[2] - b[3]))
        h = max(np.linalg.norm(b[0] - b[3]), np.linalg.norm(b[1] - b[2]))
        tall += h > 1.5 * w
    return tall / len(boxes)


def _upside_down(eng, crops: list[np.ndarray]) -> bool:
    """The line classifier says most lines (weighted by confidence) read 180 degrees."""
    if not crops:
        return False
    _, cls, _ = eng.text_cls([c.copy() for c in crops[:30]])
    flipped = sum(score for label, score in cls if label == "180")
    upright = sum(score for label, score in cls if label != "180")
    return flipped > upright


def _upright(eng, arr: np.ndarray) -> tuple[int, list[np.ndarray], list[np.ndarray]]:
    angle = 0
    boxes, crops = _detect(eng, arr)
    if len(boxes) >= 2 and _vertical_share(boxes) > 0.5:  # lying on its side: turn it a quarter
        arr, angle = np.ascontiguousarray(np.rot90(arr)), 90
        boxes, crops = _detect(eng, arr)
    if _upside_down(eng, crops):
        arr, angle = np.ascontiguousarray(np.rot90(arr, 2)), (angle + 180) % 360
        boxes, crops = _detect(eng, arr)
    return angle, boxes, crops


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\u3000" <= ch <= "\u303f" \
        or "\uff00" <= ch <= "\uffef"


def _join(left: str, right: str) -> str:
    if not left:
        return right
    if _is_cjk(left[-1]) and _is_cjk(right[0]):
        return left + right
    return f"{left} {right}"


def _layout(kept: list[tuple[np.ndarray, str, float]]) -> str:
    """Boxes to text: boxes that share a row form one line (left to right); a gap taller than a line
    between rows starts a new paragraph, so chunking sees the page's paragraphs."""
    if not kept:
        return ""
    items = []
    for box, text, _score in kept:
        ys, xs = box[:, 1], box[:, 0]
        items.append((float(ys.min()), float(ys.max()), float(xs.min()), text))
    items.sort(key=lambda it: (it[0] + it[1]) / 2)
    rows: list[list[tuple[float, float, float, str]]] = []
    for it in items:
        if rows:
            top = min(r[0] for r in rows[-1])
            bottom = max(r[1] for r in rows[-1])
            centre = (it[0] + it[1]) / 2
            if top <= centre <= bottom:
                rows[-1].append(it)
                continue
        rows.append([it])
    out: list[str] = []
    prev_bottom, prev_height = None, None
    for row in rows:
        row.sort(key=lambda it: it[2])
        line = ""
        for it in row:
            line = _join(line, it[3])
        top, bottom = min(r[0] for r in row), max(r[1] for r in row)
        height = bottom - top
        if prev_bottom is not None and out:
            gap = top - prev_bottom
            out.append("\n\n" if gap > 1.2 * max(height, prev_height or height) else "\n")
        out.append(line)
        prev_bottom, prev_height = bottom, height
    return "".join(out)
