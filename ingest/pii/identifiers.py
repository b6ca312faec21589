"""Recognizers for structured identifiers: Chinese IDs, phones, cards, credit codes, passports,
email, URL. Each has context words and, where a checksum exists, validation."""

from __future__ import annotations

import re

from ingest.pii.checksums import cn_id_valid, luhn_valid, uscc_valid
from ingest.pii.pattern_base import ContextWords, Rule, WindowContextRecognizer

# Words near a number that say it is *not* personal data (orders, invoices, amounts, references).
NEGATIVE_NUMBER_WORDS = (
    "订单", "单号", "订单号", "编号", "流水号", "发票", "合同号", "批号", "序号",
    "快递单", "工单", "票号", "型号", "邮编", "邮政编码",
    "order", "invoice", "ref", "reference", "tracking", "sku", "isbn", "doi",
    "pmid", "serial", "model", "zip", "postcode",
)

_DIGITS = re.compile(r"\d")


def _digits(value: str) -> str:
    return "".join(_DIGITS.findall(value))


# ---------------------------------------------------------------- mainland resident ID (GB 11643)
def cn_id_recognizer() -> WindowContextRecognizer:
    rx = (
        r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]"
        r"(?![0-9A-Za-z])"
    )
    ctx = ContextWords(
        before=("身份证", "身份证号", "证件号", "公民身份号码", "居民身份证", "id card", "id no", "id number",
                "resident id", "identity"),
    )
    return WindowContextRecognizer("CN_ID", [Rule("cn_id", rx, 0.9, 1.0, cn_id_valid)], ctx)


# ---------------------------------------------------------------- phones
PHONE_CONTEXT = (
    "电话", "手机", "手机号", "联系方式", "联系电话", "座机", "传真", "致电", "拨打", "热线", "tel", "phone",
    "mobile", "cell", "call", "fax", "office", "reach", "contact", "telephone", "whatsapp", "sms",
    "text me", "number", "answering", "dial",
)


def cn_mobile_recognizer() -> WindowContextRecognizer:
    # +86 / 0086 optional; 11 digits 1[3-9]x, optionally grouped 3-4-4.
    rx = r"(?<![\d+])(?:(?:\+|00)86[ \t-]?)?1[3-9]\d(?:[ \t-]?\d{4}){2}(?!\d)"
    ctx = ContextWords(before=PHONE_CONTEXT, negative=NEGATIVE_NUMBER_WORDS)
    return WindowContextRecognizer("PHONE", [Rule("cn_mobile", rx, 0.7, 0.95)], ctx, name="kb_cn_mobile")


def cn_landline_recognizer() -> WindowContextRecognizer:
    # Area code 0xx / 0xxx (optionally in brackets, optionally +86 without the 0), 7-8 digit subscriber
    # number not starting with 0/1, optional extension.
    sep = r"(?:\(?0\d{2,3}\)?[ \t-]|\(0\d{2,3}\)|(?:\+86|0086)[ \t-]?\(?\d{2,3}\)?[ \t-]?)"
    rx_sep = rf"(?<![\d+]){sep}[2-9]\d{{2,3}}[ \t-]?\d{{4}}(?:[-转]\d{{1,5}})?(?!\d)"
    rx_plain = r"(?<![\d+])0\d{2,3}[2-9]\d{6,7}(?!\d)"
    ctx = ContextWords(before=PHONE_CONTEXT, negative=NEGATIVE_NUMBER_WORDS)
    rules = [Rule("cn_landline", rx_sep, 0.6, 0.9), Rule("cn_landline_plain", rx_plain, 0.3, 0.8)]
    return WindowContextRecognizer("PHONE", rules, ctx, name="kb_cn_landline")


_DATE_LIKE = re.compile(
    r"^(?:\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}"
    r"|(?:19|20)\d{2}\s?[-–]\s?(?:19|20)\d{2})$"
)
_DECIMAL = re.compile(r"\d+[.,]\d+")


_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_IPV4_SHAPE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE_PREFIX = re.compile(r"^(?:19|20)\d{2}[-./]\d{1,2}[-./]\d{1,2}")


def _is_range(core: str) -> bool:
    """'400-1000', '330 000-701 200' are ranges of numbers, not phones."""
    sides = re.split(r"\s*[-–]\s*", core)
    if len(sides) == 2 and not core.startswith(("0", "+")) and all(x.replace(" ", "").isdigit() for x in sides):
        left, right = (int(x.replace(" ", "")) for x in sides)
        return left < right
    return False


def _phone_ok(value: str) -> bool:
    core = re.split(r"\s*(?:x|ext\.?)\s*\d+$", value, flags=re.IGNORECASE)[0].strip()
    n = len(_digits(core))
    groups = len(re.findall(r"\d+", core))
    if not (7 <= n <= 15 or (n == 6 and groups >= 3)):
        return False
    if _SSN_SHAPE.match(core) or _IPV4_SHAPE.match(core) or _DATE_PREFIX.match(core):
        return False
    if _is_range(core):
        return False
    if "." in core and re.search(r"[-–]", core):
        return False  # "0.55-0.92", "1457.60-2761.80": ranges of decimals, not "438.812.1525"
    return not (_DATE_LIKE.match(core) or _DECIMAL.fullmatch(core))


def intl_phone_recognizer() -> WindowContextRecognizer:
    """Phone numbers written for people: digit groups with separators, '+', brackets or extensions.

    A bare digit run is only a phone next to a context word (it may be an order number)."""
    grouped = (
        r"(?<![A-Za-z0-9+./-])(?:\+\d{1,3}[ \t.-]?|00\d{1,3}[ \t.-])?(?:\(\d{1,5}\)[ \t.-]?)?\d{1,5}"
        r"(?:[ \t.-]\d{1,8}){1,5}(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?![A-Za-z0-9/:]|[.-]\d)"
    )
    bracketed = (
        r"(?<![A-Za-z0-9+])(?:\+\d{1,3}[ \t.-]?)?\(\d{1,5}\)\s?\d{2,5}(?:[ \t.-]?\d{2,5}){0,3}"
        r"(?:\s?x\d{1,6})?(?![A-Za-z0-9/])"
    )
    plus = r"(?<![A-Za-z0-9+])\+\d{8,14}(?![A-Za-z0-9])"
    bare = r"(?<![A-Za-z0-9+./-])\d{7,12}(?:x\d{1,6})?(?![A-Za-z0-9/]|[.-]\d)"
    rules = [
        Rule("phone_grouped", grouped, 0.55, 0.85, _phone_ok),
        Rule("phone_bracketed", bracketed, 0.65, 0.9, _phone_ok),
        Rule("phone_plus", plus, 0.65, 0.9, _phone_ok),
        Rule("phone_bare", bare, 0.2, 0.6, _phone_ok),
    ]
    ctx = ContextWords(
        before=PHONE_CONTEXT, after=("office", "mobile", "fax", "home", "cell", "work"),
        negative=NEGATIVE_NUMBER_WORDS,
    )
    return WindowContextRecognizer("PHONE", rules, ctx, name="kb_phone")


# ---------------------------------------------------------------- bank cards (UnionPay/Visa/Master...)
_CARD_PREFIX = re.compile(r"^(?:62|81|4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|35|6011|65)")


def _card_ok(value: str) -> bool:
    d = _digits(value)
    return 13 <= len(d) <= 19 and bool(_CARD_PREFIX.match(d)) and luhn_valid(d)


def bank_card_recognizer() -> WindowContextRecognizer:
    rx = r"(?<![\d-])\d{4}(?:[ \t-]?\d{4}){2}(?:[ \t-]?\d{1,4}){1,2}(?![\d-])"
    amex = r"(?<![\d-])3[47]\d{2}[ \t-]?\d{6}[ \t-]?\d{5}(?![\d-])"
    ctx = ContextWords(
        before=("卡号", "银行卡", "信用卡", "借记卡", "储蓄卡", "银联", "账号", "帐号", "户名", "card", "cc",
                "visa", "mastercard", "unionpay", "account", "debit", "credit"),
        negative=NEGATIVE_NUMBER_WORDS,
    )
    rules = [Rule("bank_card", rx, 0.6, 0.95, _card_ok), Rule("amex", amex, 0.6, 0.95, _card_ok)]
    return WindowContextRecognizer("BANK_CARD", rules, ctx)


# ---------------------------------------------------------------- unified social credit code (GB 32100)
def uscc_recognizer() -> WindowContextRecognizer:
    rx = r"(?<![0-9A-Za-z])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z])"
    ctx = ContextWords(
        before=("统一社会信用代码", "信用代码", "社会信用", "营业执照", "税号", "纳税人识别号", "uscc",
                "credit code")
    )
    # An all-digit 18-character string is more likely a resident ID: only trust it with context.
    rules = [
        Rule("uscc", rx, 0.85, 1.0, lambda v: uscc_valid(v) and not v.isdigit(), flags=0),
        Rule("uscc_digits", rx, 0.4, 1.0, lambda v: uscc_valid(v) and v.isdigit(), flags=0),
    ]
    return WindowContextRecognizer("CN_USCC", rules, ctx)


# ---------------------------------------------------------------- passports
def passport_recognizer() -> WindowContextRecognizer:
    # Chinese e-passports E/G + 8 digits or E + letter + 7 digits; other countries: a letter or two
    # and 6-9 digits. Without the word "passport" nearby these are just codes.
    cn = r"(?<![0-9A-Za-z])(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E?\d{7})(?![0-9A-Za-z])"
    generic = r"(?<![0-9A-Za-z])[A-Z]{1,2}\d{6,9}(?![0-9A-Za-z])"
    ctx = ContextWords(before=("护照", "护照号", "passport", "travel document", "通行证"), window_before=30)
    rules = [Rule("cn_passport", cn, 0.4, 0.9, flags=0), Rule("passport", generic, 0.1, 0.85, flags=0)]
    return WindowContextRecognizer("PASSPORT", rules, ctx)


# ---------------------------------------------------------------- email and URL (no tldextract: offline)
def email_recognizer() -> WindowContextRecognizer:
    rx = (
        r"(?<![A-Za-z0-9.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
    )
    ctx = ContextWords(before=("email", "e-mail", "mail", "邮箱", "电子邮件", "邮件"))
    return WindowContextRecognizer("EMAIL", [Rule("email", rx, 0.9, 1.0)], ctx)


def url_recognizer() -> WindowContextRecognizer:
    rx = r"\b(?:https?://|www\.)[^\s<>\"'，。；！？、）)\]]+[^\s<>\"'，。；！？、）)\].,;:!?]"
    ctx = ContextWords(before=("website", "url", "link", "网址", "网站", "链接", "homepage", "posted"))
    return WindowContextRecognizer("URL", [Rule("url", rx, 0.9, 0.95)], ctx)


# ---------------------------------------------------------------- IBAN (any case) and IP addresses
def _iban_ok(value: str) -> bool:
    from ingest.pii.checksums import iban_valid

    return iban_valid(value)


def iban_recognizer() -> WindowContextRecognizer:
    """Presidio's IBAN recognizer only reads upper case; people type 'my iban is gb12...'."""
    rx = r"(?<![0-9A-Za-z])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,4})?(?![0-9A-Za-z])"
    ctx = ContextWords(before=("iban", "bank", "account", "transfer", "账户", "账号"))
    return WindowContextRecognizer("IBAN", [Rule("iban", rx, 0.8, 1.0, _iban_ok)], ctx)


def _ip_ok(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_recognizer() -> WindowContextRecognizer:
    v4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)"
    v6 = r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"
    ctx = ContextWords(before=("ip", "ipv4", "ipv6", "address", "host", "server", "地址"))
    rules = [Rule("ipv4", v4, 0.6, 0.9, _ip_ok), Rule("ipv6", v6, 0.7, 0.95, lambda v: v.count(":") >= 2 and _ip_ok(v))]
    return WindowContextRecognizer("IP_ADDRESS", rules, ctx)


# ---------------------------------------------------------------- US social security numbers
def _ssn_ok(value: str) -> bool:
    """Same separator throughout; no all-zero group; area never 000/666/9xx; not the published samples."""
    seps = {c for c in value if not c.isdigit()}
    d = _digits(value)
    if len(seps) > 1 or len(d) != 9 or len(set(d)) == 1:
        return False
    if d[:3] in ("000", "666") or d[0] == "9" or d[3:5] == "00" or d[5:] == "0000":
        return False
    return d not in ("123456789", "078051120")


def us_ssn_recognizer() -> WindowContextRecognizer:
    grouped = r"(?<![\w.-])\d{3}([- .])\d{2}\1\d{4}(?![\w-]|\.\d)"
    bare = r"(?<![\w.-])\d{9}(?![\w-]|\.\d)"
    ctx = ContextWords(before=("ssn", "ssns", "social security", "social", "security number", "ssid"),
                       negative=NEGATIVE_NUMBER_WORDS, window_before=40)
    rules = [Rule("ssn_grouped", grouped, 0.5, 0.9, _ssn_ok), Rule("ssn_bare", bare, 0.1, 0.7, _ssn_ok)]
    return WindowContextRecognizer("US_SSN", rules, ctx, name="kb_us_ssn")
