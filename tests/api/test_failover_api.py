"""Failover through the API: the remote generator is a local stub that fails; the in-process small
model answers, the pool switches after 3 failures, and the audit record and /metrics say who answered."""

from __future__ import annotations

import httpx
import openai
import pytest
from sqlalchemy import select

from app.api.app import create_app
from app.models import AuditRecord
from app.services import api_keys
from tests.api.conftest import ADMIN, serve
from tests.llm.test_failover import Stub

pytestmark = pytest.mark.slow
QUESTION = "How many days of paid annual leave do employees receive per year?"


def test_the_local_model_takes_over_when_the_remote_fails(kb_docs):
    stub = Stub()
    llm = kb_docs.settings.llm
    saved = (llm.backend, llm.openai_base_url, llm.failover_check_seconds)
    real = kb_docs.__dict__.pop("generator", None)
    llm.backend, llm.openai_base_url, llm.failover_check_seconds = "failover", stub.url, 0
    key = api_keys.create(kb_docs, ADMIN, "sam").secret
    try:
        with serve(create_app(kb_docs)) as url:
            ai = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)
            seqs = []
            for _ in range(4):
                done = ai.chat.completions.create(model="kb", messages=[{"role": "user", "content": QUESTION}])
                kb = done.model_extra["kb"]
                assert not kb["refused"] and done.choices[0].message.content
                seqs.append(kb["audit_seq"])
            assert stub.chat_calls >= 3 and kb_docs.generator.active.name == "llamacpp"
            calls = stub.chat_calls
            ai.chat.completions.create(model="kb", messages=[{"role": "user", "content": QUESTION}])
            assert stub.chat_calls == calls  # switched: the failing remote is no longer tried
            local_name = kb_docs.generator.members[1].generator.model_name
            with kb_docs.sessions() as s:
                models = {r.details["model"] for r in s.scalars(select(AuditRecord).where(AuditRecord.seq.in_(seqs)))}
            assert models == {local_name}
            text = httpx.get(f"{url}/metrics").text
            assert 'kb_generator_active{generator="llamacpp"} 1.0' in text
            assert 'kb_generator_healthy{generator="openai"} 0.0' in text
            assert f'kb_answers_total{{model="{local_name}",outcome="answered"}}' in text
    finally:
        stub.close()
        llm.backend, llm.openai_base_url, llm.failover_check_seconds = saved
        kb_docs.__dict__.pop("generator", None)
        if real is not None:
            kb_docs.generator = real
