"""Chinese person names without a Chinese NER model: a surname list plus the words around a name
(姓名：, 先生/女士, 患者, "X说"). Precision and recall are measured on CLUENER by `kb eval pii`."""

from __future__ import annotations

from ingest.pii.cn_surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES
from ingest.pii.pattern_base import ContextWords, Rule, WindowContextRecognizer


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


__all__ = ["COMPOUND_SURNAMES", "SINGLE_SURNAMES", "cn_name_recognizer"]

_HAN = r"[\u4e00-\u9fa5]"
# Characters that end a name rather than belong to it (particles, verbs, punctuation-like words).
_NOT_NAME = "的了是在和与及说称等为被把向对从也都就还又而"
_GIVEN = rf"(?:(?![{_NOT_NAME}]){_HAN})"
_SURNAME = "(?:" + "|".join(COMPOUND_SURNAMES) + f"|[{SINGLE_SURNAMES}])"
_NAME = rf"{_SURNAME}{_GIVEN}{{1,2}}"

LABEL_WORDS = _words(
    "姓名 名字 联系人 收件人 收货人 寄件人 患者 病人 申请人 法定代表人 "
    "法人代表 负责人 经办人 客户 借款人 贷款人 被告人 被告 原告 当事人 "
    "持卡人 户主 签名 投保人 被保险人 受益人 监护人 家长 学生 员工 职工"
)
TITLE_WORDS = _words(
    "先生 女士 小姐 同志 老师 医生 大夫 教授 博士 经理 主任 书记 院长 "
    "校长 律师 警官 同学 总经理 董事长 局长 部长 主席 市长 省长 县长 处长 "
    "科长 厂长 总裁 会长 委员 代表 教练 队长 导演 记者 夫妇 父子 母子"
)
SPEECH_VERBS = _words(
    "说 表示 认为 指出 介绍 称 告诉 透露 坦言 强调 回忆 解释 笑称"
)


def cn_name_recognizer() -> WindowContextRecognizer:
    labels = "|".join(LABEL_WORDS)
    titles = "|".join(TITLE_WORDS)
    verbs = "|".join(SPEECH_VERBS)
    rules = [
        # 姓名：张三 / 患者王小明
        Rule("cn_name_label", rf"(?:{labels})[：:\s]{{0,2}}({_NAME})", 0.85, 0.85, group=1),
        # 张三先生 / 李明教授
        Rule("cn_name_title", rf"({_NAME})(?:{titles})", 0.7, 0.8, group=1),
        # 叶老桂认为 / 李成说 (news style); weaker
        Rule("cn_name_speech", rf"(?<![\u4e00-\u9fa5])({_NAME})(?:{verbs})", 0.55, 0.7, group=1),
        Rule("cn_name_speech_inline", rf"[，,、：:“]({_NAME})(?:{verbs})", 0.55, 0.7, group=1),
    ]
    ctx = ContextWords(before=("姓名", "名叫", "叫做", "我叫", "他叫", "她叫"))
    return WindowContextRecognizer("PERSON", rules, ctx, name="kb_cn_name")
