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

The models run on OpenVINO (ingest.ocr._use_openvino says why), ONNX Runtime being the fallback.
Detection runs on a copy whose long side is ``DET_SIDE`` pixels (a 200 dpi A4 page is 2339): on two
cores that halves the time per page and loses nothing at body-text sizes; lines are cut from the full
resolution image for recognition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

ENGINE_NAME = "RapidOCR PP-OCRv4"
DET_SIDE = 1280  # long side of the image detection sees
MIN_SCORE = 0.5  # recognition confidence below which a line is dropped (RapidOCR's default)
CONFIDENT_UPRIGHT = 0.9  # a line read upright at least this confidently is not read again turned

_LOCK = threading.Lock()
_ENGINE = None


@dataclass
class OcrPage:
    text: str
    lines: int
    score: float  # mean recognition confidence of the kept lines (0 when none)
    angle: int  # degrees the page was turned (counter-clockwise) to read it upright
    seconds: float


@dataclass
class OcrRun:
    """What ``read_pages`` read: text per page number, how many pages, and why it stopped early."""

    texts: dict[int, str] = field(default_factory=dict)
    read: int = 0
    stopped: str = ""


def read_pages(pages: Sequence[tuple[int, Callable[[], object]]], *, max_pages: int, max_seconds: float,
               progress: Callable[[int, int], None] | None = None) -> OcrRun:
    """Read ``pages`` (page number, a function giving its PIL image) in order, within the page and time
    limits of one document (ingest.ocr_max_pages, ingest.ocr_max_seconds). Each page is loaded only
    when its turn comes, so a limit reached leaves the rest unrendered. ``progress(read, to_read)``
    is called after each page. The one OCR loop of every parser (images, PDF scans)."""
    run = OcrRun()
    started, to_read = time.monotonic(), min(len(pages), max_pages)
    for number, load in pages:
        if run.read >= max_pages:
            run.stopped = f"stopped at the {max_pages}-page OCR limit (ingest.ocr_max_pages)"
            break
        if time.monotonic() - started > max_seconds:
            run.stopped = f"stopped at the {max_seconds:g}-second OCR limit (ingest.ocr_max_seconds)"
            break
        run.texts[number] = read(load()).text
        run.read += 1
        if progress is not None:
            progress(run.read, to_read)
    return run


def _engine():
    """The RapidOCR engine of this process, built on first use from the models inside its wheel."""
    global _ENGINE
    if _ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        t = time.perf_counter()
        eng = RapidOCR()
        runtime = _use_openvino(eng)
        _ENGINE = eng
        log.info("OCR engine (%s on %s) loaded in %.1fs", ENGINE_NAME, runtime, time.perf_counter() - t)
    return _ENGINE


class _OpenVinoModel:
    """Stands in for RapidOCR's ONNX Runtime session: same call, same output list."""

    def __init__(self, core, path: str) -> None:
        self._model = core.compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY"})

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._model(batch)[0]]


def _use_openvino(eng) -> str:
    """Run the same three ONNX models with OpenVINO (kb's embedder runtime already): measured 5-7x
    faster than ONNX Runtime on the recognition model on 2 cores (bench/ocr.py), same readings. Falls
    back to ONNX Runtime when OpenVINO is missing or cannot compile them."""
    from app.offline import enforce

    enforce()  # before openvino is imported: no telemetry
    try:
        import openvino as ov
        from rapidocr_onnxruntime.main import root_dir

        core = ov.Core()
        models = root_dir / "models"
        det = _OpenVinoModel(core, str(models / "ch_PP-OCRv4_det_infer.onnx"))
        cls = _OpenVinoModel(core, str(models / "ch_ppocr_mobile_v2.0_cls_infer.onnx"))
        rec = _OpenVinoModel(core, str(models / "ch_PP-OCRv4_rec_infer.onnx"))
    except Exception:  # no OpenVINO, or a model it cannot read: ONNX Runtime reads the same files
        log.warning("OCR runs on ONNX Runtime: OpenVINO could not load the models", exc_info=True)
        return "ONNX Runtime"
    eng.text_det.infer, eng.text_cls.infer, eng.text_rec.session = det, cls, rec  # characters were read at init
    return "OpenVINO"


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
        rec = _recognise(eng, crops)
    kept = [(box, text.strip(), score) for box, (text, score) in zip(boxes, rec, strict=True)
            if float(score) >= MIN_SCORE and text.strip()]
    text = _layout(kept)
    mean = sum(s for _, _, s in kept) / len(kept) if kept else 0.0
    return OcrPage(text, len(kept), mean, angle, time.perf_counter() - t)


def _recognise(eng, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Read each line as it stands on the upright page. The line classifier misreads some Chinese lines
    as upside down (0.91 confident on a clean line), so a line it flags is read both ways and the
    reading with the higher confidence is kept, instead of trusting the flag. A line already read upright
    with confidence is not turned: an upside-down line reads as noise (flagged clean lines scored 0.94-0.999
    upright and 0.0-0.47 turned in bench/ocr.py), and the second reading cost a fifth of the page's time."""
    rec, _ = eng.text_rec(crops)
    out = [(text, float(score)) for text, score, *_ in rec]
    _, cls, _ = eng.text_cls([c.copy() for c in crops])
    flagged = [i for i, (label, _score) in enumerate(cls) if label == "180" and out[i][1] < CONFIDENT_UPRIGHT]
    if flagged:
        turned, _ = eng.text_rec([np.ascontiguousarray(np.rot90(crops[i], 2)) for i in flagged])
        for i, (text, score, *_) in zip(flagged, turned, strict=True):
            if float(score) > out[i][1]:
                out[i] = (text, float(score))
    return out


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
