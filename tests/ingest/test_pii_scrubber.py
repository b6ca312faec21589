"""The Presidio scrubber on real text: Chinese identifiers we generate with valid checksums, a negative
set of ordinary numbers, the presidio-research sample (MIT, copied into tests/fixtures/pii) and the
offline guarantee."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import PiiSettings
from ingest.pii import build_scrubber
from ingest.pii.checksums import cn_id_check_char, luhn_complete, uscc_check_char
from ingest.pii.evaluate import evaluate, format_report
from ingest.pii.passthrough import PassthroughScrubber
from ingest.pii.scan import read_jsonl, read_texts, scan_texts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pii"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scrubber():
    return build_scrubber(PiiSettings())


# ------------------------------------------------------------------ generated Chinese identifiers
def _cn_id(rng: random.Random) -> str:
    region = rng.choice(["110105", "310104", "440305", "320102", "510107", "420111"])
    birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    first17 = region + birth + f"{rng.randint(0, 999):03d}"
    return first17 + cn_id_check_char(first17)


def _mobile(rng: random.Random) -> str:
    number = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"
    style = rng.randint(0, 2)
    if style == 1:
        return f"+86 {number}"
    if style == 2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    return number


def _landline(rng: random.Random) -> str:
    area = rng.choice(["010", "021", "0755", "0571", "027"])
    width = 7 if len(area) == 3 else 6  # 8-digit numbers after 3-digit area codes, 7 after 4-digit ones
    local = f"{rng.randint(2, 8)}{rng.randint(0, 10**width - 1):0{width}d}"
    return f"{area}-{local}" if rng.random() < 0.7 else f"({area}){local}"


def _card(rng: random.Random) -> str:
    prefix = rng.choice(["622202", "622848", "621700", "4", "51", "53"])
    length = rng.choice([16, 19]) if prefix.startswith("62") else 16
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    card = luhn_complete(body)
    return " ".join(card[i : i + 4] for i in range(0, len(card), 4)) if rng.random() < 0.3 else card


def _uscc(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    first17 = rng.choice("9159") + rng.choice("123") + rng.choice(["110105", "310104", "440300"]) + "".join(
        rng.choice(alphabet) for _ in range(9)
    )
    return first17 + uscc_check_char(first17)


CN_TEMPLATES = {
    "CN_ID": ["申请人身份证号码：{}，请核对。", "患者的身份证号为{}。", "居民身份证 {} 已登记", "证件号{}，有效期长期"],
    "PHONE": ["如有疑问请致电{}联系我们。", "联系人手机：{}", "他的电话是{}，晚上再打。", "客服热线 {}（工作日）"],
    "BANK_CARD": ["请将款项转入银行卡号{}。", "持卡人卡号：{}", "退款将原路返回至尾号不变的借记卡{}。"],
    "CN_USCC": ["统一社会信用代码：{}", "公司营业执照号码{}已年检。"],
    "EMAIL": ["简历请发送至邮箱{}，谢谢。"],
    "PASSPORT": ["护照号码：E{}，签发地北京。"],
}


def _cn_positive_set(n_per_template: int = 6) -> list[tuple[str, str, str]]:
    rng = random.Random(20240611)
    makers = {
        "CN_ID": _cn_id,
        "PHONE": lambda r: _mobile(r) if r.random() < 0.6 else _landline(r),
        "BANK_CARD": _card,
        "CN_USCC": _uscc,
        "EMAIL": lambda r: f"zhang{r.randint(1, 999)}@example.com.cn",
        "PASSPORT": lambda r: f"{r.randint(0, 99999999):08d}",
    }
    out = []
    for etype, templates in CN_TEMPLATES.items():
        for template in templates:
            for _ in range(n_per_template):
                value = makers[etype](rng)
                text = template.format(value)
                if etype == "PASSPORT":
                    value = "E" + value
                out.append((etype, text, value))
    return out


def test_chinese_identifiers_recall(scrubber) -> None:
    samples = _cn_positive_set()
    found = scrubber.analyze_many([t for _, t, _ in samples])
    hits = 0
    misses = []
    for (etype, text, value), entities in zip(samples, found, strict=True):
        start = text.index(value)
        if any(e.type == etype and e.start <= start and e.end >= start + len(value) for e in entities):
            hits += 1
        else:
            misses.append((etype, text, entities))
    recall = hits / len(samples)
    assert recall >= 0.98, misses[:5]


def test_wrong_check_digit_is_not_an_id(scrubber) -> None:
    first17 = "11010519491231002"
    good = first17 + cn_id_check_char(first17)
    bad = first17 + next(c for c in "0123456789X" if c != good[-1])
    assert [e.type for e in scrubber.analyze(f"身份证号：{good}")] == ["CN_ID"]
    assert all(e.type != "CN_ID" for e in scrubber.analyze(f"身份证号：{bad}"))
    card = luhn_complete("622202100012345")
    bad_card = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert any(e.type == "BANK_CARD" for e in scrubber.analyze(f"卡号 {card}"))
    assert all(e.type != "BANK_CARD" for e in scrubber.analyze(f"卡号 {bad_card}"))


NEGATIVE = [
    "本季度营业收入为 13,800,000 元，同比增长 12.5%。",
    "订单号：202311201234567，预计 2023-11-25 送达。",
    "订单编号 4111111111111111 已发货。",
    "合同金额人民币 1,250,000.00 元整，签订日期 2024年3月15日。",
    "会议定于 2024-06-18 14:30 在 3 号会议室举行。",
    "发票号码 04400212345678 开票日期 2024.01.09",
    "快递单号 SF1234567890123 已签收。",
    "The invoice total was $12,345.67, due on 2024-05-31.",
    "Order number 13812345678 ships tomorrow.",
    "Between 2001-2005 the cohort grew from 1,234 to 5,678 patients (p = 0.003).",
    "See table 3 and figure 2; the 95% CI was 1.2-3.4.",
    "Reference 10.1016/j.cell.2019.05.031 reports 12.5 mg/kg twice daily.",
    "价格：¥ 2,999，库存 1500 件，型号 A1234567。",
    "邮编 100080，房间容纳 120 人。",
    "On 12/15/1995 the sample count reached 4,532,118.",
]


def test_no_false_positives_on_ordinary_numbers(scrubber) -> None:
    for text in NEGATIVE:
        assert scrubber.analyze(text) == [], text


# ------------------------------------------------------------------ presidio-research sample (English)
def test_presidio_research_small_sample(scrubber) -> None:
    result = evaluate(scrubber, FIXTURES / "generated_small.json", "presidio")
    report = format_report(result)
    structured = result["structured"]
    overall = result["overall"]
    assert structured["recall"] >= 0.95, report
    assert structured["precision"] >= 0.9, report
    assert overall["precision"] >= 0.8, report
    # The target: recall >= 0.85 at precision >= 0.75 (the large set gives about 0.91 / 0.89).
    assert overall["recall"] >= 0.85, report
    person = result["per_type"]["PERSON"]
    assert person["recall"] >= 0.75 and person["precision"] >= 0.75, report


# ------------------------------------------------------------------ behaviour
def test_placeholders_keep_text_readable(scrubber) -> None:
    r = scrubber.scrub("Contact John Smith at john.smith@example.com or +86 138 1234 5678.")
    assert "<EMAIL>" in r.text and "<PHONE>" in r.text and "<PERSON>" in r.text
    assert "example.com" not in r.text and "5678" not in r.text
    assert r.text.startswith("Contact ")


def test_scrub_names_off_keeps_names_and_skips_ner() -> None:
    s = build_scrubber(PiiSettings(scrub_names=False))
    r = s.scrub("患者张三先生，电话13812345678。Mr. John Smith called.")
    assert "张三" in r.text and "John Smith" in r.text and "<PHONE>" in r.text
    assert s._load()[1] is None  # the spaCy model is never loaded


def test_entity_set_and_threshold() -> None:
    only_email = build_scrubber(PiiSettings(entities=["email"]))
    r = only_email.scrub("mail a@b.org, phone 13812345678")
    assert r.text == "mail <EMAIL>, phone 13812345678"
    strict = build_scrubber(PiiSettings(threshold=0.99))
    assert strict.analyze("call 021-62345678 today") == []
    with pytest.raises(ConfigError, match="Unknown PII entity"):
        build_scrubber(PiiSettings(entities=["SHOE_SIZE"]))


def test_disabled_is_passthrough() -> None:
    s = build_scrubber(PiiSettings(enabled=False))
    assert isinstance(s, PassthroughScrubber)
    assert s.scrub("身份证 11010519491231002X").text == "身份证 11010519491231002X"


def test_runs_without_network(monkeypatch) -> None:
    """tldextract (Presidio's email/URL recognizers) and spaCy downloads would reach for the network."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    fresh = build_scrubber(PiiSettings(entities=["EMAIL", "URL", "PERSON", "PHONE"]))
    r = fresh.scrub("Write to anna.berg@uni-example.de or see https://www.example.org/x, Anna Berg, 010-62345678")
    assert "<EMAIL>" in r.text and "<URL>" in r.text
    assert attempts == []


def test_scan_helpers(tmp_path: Path, scrubber) -> None:
    jsonl = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": "电话 13812345678"}, ensure_ascii=False), "", json.dumps({"text": "nothing"})]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(scan_texts(scrubber, read_texts(jsonl)))
    assert rows[0]["redacted"] == "电话 <PHONE>"
    assert rows[0]["entities"][0]["type"] == "PHONE" and rows[0]["entities"][0]["start"] == 3
    assert rows[1] == {"entities": [], "redacted": "nothing"}
    plain = tmp_path / "in.txt"
    plain.write_text("a@b.org\n\nplain\n", encoding="utf-8")
    assert [r["redacted"] for r in scan_texts(scrubber, read_texts(plain))] == ["<EMAIL>", "plain"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    from app.errors import KbError

    with pytest.raises(KbError, match="no string field 'text'"):
        list(read_jsonl(bad))


# ------------------------------------------------------------------ English names: lexicon, cues, NER
@pytest.mark.parametrize("name_ner", ["cued", "off"])
def test_names_from_lexicon_and_cues(name_ner: str) -> None:
    s = build_scrubber(PiiSettings(name_ner=name_ner))
    cases = {
        "They had 4: Amber, Brandi, Malon and Kevin.": ["Amber", "Brandi", "Kevin"],
        "Why is Iwao so impulsive?": ["Iwao"],
        "I want to add Latoya Shimasaki as a beneficiary.": ["Latoya Shimasaki"],
        "i'm so jealous! said petra to michael": ["petra", "michael"],
        "Eklund, Warren and Bailey founded the firm.": ["Eklund", "Warren", "Bailey"],
    }
    for text, names in cases.items():
        found = [text[e.start : e.end] for e in s.analyze(text) if e.type == "PERSON"]
        for name in names:
            assert any(name in f for f in found), (text, found)


def test_eponyms_and_science_are_not_people() -> None:
    s = build_scrubber(PiiSettings())
    texts = [
        "Patients with Parkinson's disease and Alzheimer disease were followed for 5 years.",
        "Survival was estimated with Kaplan-Meier curves and Cox regression; Gram-negative isolates were excluded.",
        "Western blot showed that Pol IV and Aurora B kinase bind Cas9 in HeLa cells.",
        "In May 2019 the cohort grew. Will this hold? The Netherlands and Victoria joined.",
        "Fisher's exact test and Student's t test gave p < 0.05 after Bonferroni correction.",
    ]
    for text in texts:
        assert [text[e.start : e.end] for e in s.analyze(text) if e.type == "PERSON"] == [], text


def test_name_next_to_address_keeps_both() -> None:
    s = build_scrubber(PiiSettings())
    r = s.scrub("Mrs. Karen Thorkildsen Suite 680, 4022 Oakridge Lane, Dallas")
    assert "Karen" not in r.text and "Oakridge" not in r.text
    assert "<PERSON>" in r.text and "<ADDRESS>" in r.text


def test_unknown_ner_mode_is_a_config_error() -> None:
    from ingest.pii.presidio_scrubber import PresidioScrubber

    with pytest.raises(ConfigError, match="NAME_NER"):
        PresidioScrubber(name_ner="always")
