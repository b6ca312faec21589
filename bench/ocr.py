"""OCR accuracy and speed: character error rate (CER) and pages/s of ingest.ocr.

Pages are rendered here from known Chinese and English text (A4 at 200 dpi, WenQuanYi Micro Hei), in
five conditions: clean, slightly rotated (1.5 degrees), blurred (Gaussian, radius 1.2), JPEG at
quality 35, and all three at once; then the image-only fixture PDFs are read through the real parser
(speed and characters found; they have no ground truth).
Targets on 2 cores: CER <= 3% clean, <= 8% degraded, >= 1 page/s.
``cpu_s`` is the CPU time a page took (all threads): on a shared, busy host the wall time says more
about the neighbours than about OCR, and 2 / cpu_s bounds the pages/s of an idle 2-core machine.

    .venv/bin/python bench/ocr.py [--pages N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest import ocr  # noqa: E402
from ingest.parsers import parse  # noqa: E402

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
ZH = (
    "根据本行档案管理规定，所有贷款合同的原件应当保存在总行档案室，副本由分行保管。借款人如需查阅合同，"
    "须持有效身份证件到营业网点提出书面申请，经业务主管审批后方可调阅。档案室每周一至周五上午九点开放，"
    "下午五点关闭，节假日不对外办理查档业务。电子影像资料保存期限为三十年，纸质资料保存期限为十五年。"
    "对于已经结清的贷款，档案应在结清后六个月内完成归档整理，并由档案管理员登记入册。"
)
EN = (
    "All loan agreements signed before the merger are kept in the central archive on the third floor. "
    "Branch staff may request a copy by filing form AR-7 with the archive office, which answers within "
    "two working days. Originals never leave the archive; scanned copies are released only to the account "
    "officer named on the request. The archive is open from nine in the morning until five in the afternoon, "
    "Monday to Friday, and closed on public holidays. Records of settled loans are retained for fifteen years."
)
FIXTURES = [ROOT / "tests/fixtures/docs/unstructured/pdf/single_table.pdf",
            ROOT / "tests/fixtures/ocr/table-multi-row-column-cells.pdf"]


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy line breaking by rendered width: at spaces for English, anywhere for Chinese."""
    lines, line = [], ""
    tokens = text.split(" ") if " " in text else list(text)
    sep = " " if " " in text else ""
    for tok in tokens:
        trial = f"{line}{sep}{tok}" if line else tok
        if font.getlength(trial) <= width:
            line = trial
        else:
            lines.append(line)
            line = tok
    if line:
        lines.append(line)
    return lines


def render(text: str, font_px: int = 36) -> Image.Image:
    img = Image.new("L", (1654, 2339), 255)
    font = ImageFont.truetype(FONT, font_px)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(wrap(text, font, 1654 - 300)):
        draw.text((150, 200 + i * int(font_px * 1.9)), line, font=font, fill=0)
    return img


def degrade(img: Image.Image, how: str) -> Image.Image:
    if how == "all":  # a poor photocopy: all three at once
        return degrade(degrade(degrade(img, "rotated"), "blurred"), "jpeg")
    if how == "rotated":
        return img.rotate(1.5, fillcolor=255, resample=Image.BICUBIC)
    if how == "blurred":
        return img.filter(ImageFilter.GaussianBlur(1.2))
    if how == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=35)
        return Image.open(io.BytesIO(buf.getvalue()))
    return img


def _norm(text: str) -> str:
    table = str.maketrans("，。；：！？（）", ",.;:!?()")
    return "".join(text.translate(table).split())


def cer(ref: str, hyp: str) -> float:
    """Levenshtein distance over characters, white space ignored, divided by the reference length."""
    a, b = _norm(ref), _norm(hyp)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(1, len(a))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    ocr.read(Image.new("L", (200, 100), 255))  # load the models once, outside the timings
    load = time.perf_counter() - t
    rows = []
    for lang, text in (("zh", ZH), ("en", EN)):
        clean = render(text)
        for how in ("clean", "rotated", "blurred", "jpeg", "all"):
            image = degrade(clean, how)
            cpu = time.process_time()
            page = ocr.read(image)
            rows.append({"page": f"{lang}/{how}", "cer": round(cer(text, page.text), 4),
                         "seconds": round(page.seconds, 2), "cpu_s": round(time.process_time() - cpu, 2),
                         "lines": page.lines})
    fixtures = []
    for path in FIXTURES:
        t = time.perf_counter()
        doc = parse(path.read_bytes(), path.name)
        fixtures.append({"file": path.name, "seconds": round(time.perf_counter() - t, 2),
                         "pages": int(doc.metadata.get("ocr_pages", 0)), "chars": len(doc.text)})
    gen_seconds = sum(r["seconds"] for r in rows)
    fix_pages = sum(f["pages"] for f in fixtures)
    summary = {
        "engine": ocr.ENGINE_NAME, "model_load_s": round(load, 2),
        "cer_clean_max": max(r["cer"] for r in rows if r["page"].endswith("clean")),
        "cer_degraded_max": max(r["cer"] for r in rows if not r["page"].endswith("clean")),
        "pages_per_s_generated": round(len(rows) / gen_seconds, 2),
        "cpu_s_per_page": round(sum(r["cpu_s"] for r in rows) / len(rows), 2),
        "pages_per_s_fixtures": round(fix_pages / sum(f["seconds"] for f in fixtures), 2),
    }
    if args.json:
        print(json.dumps({"pages": rows, "fixtures": fixtures, "summary": summary}, ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        print(f"{r['page']:<12} CER {r['cer'] * 100:5.1f}%  {r['seconds']:5.2f} s  cpu {r['cpu_s']:5.2f} s  "
              f"{r['lines']} lines")
    for f in fixtures:
        print(f"{f['file']:<34} {f['pages']} page(s) {f['seconds']:5.2f} s  {f['chars']} chars")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
