"""How a collection's PII policy (app.accounts.PII_POLICIES) is named on the pages, in both languages."""

from __future__ import annotations

from ui import i18n
from ui.i18n import t

i18n.register({
    "pii.all": {"en": "All (names and addresses too)", "zh": "全部个人信息（含姓名、地址）"},
    "pii.identifiers": {"en": "Identifiers only (public documents)", "zh": "仅证件号等标识（公开文档）"},
    "pii.help": {"en": "Identifiers only: ID and card numbers, phones and e-mail addresses are still removed, "
                       "names and addresses are kept. For public documents (regulations, reports), whose "
                       "answers are often a name or a place.",
                 "zh": "仅标识：仍去除证件号、银行卡号、电话和邮箱，保留姓名和地址。"
                       "适用于公开文档（法规、报告等），这类问题的答案常常就是人名或地名。"},
})


def label(policy: str) -> str:
    return t("pii." + policy)
