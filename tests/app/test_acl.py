"""Access control inside retrieval: a user never receives a chunk of a collection they cannot read."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import accounts
from app.models import Chunk
from app.services import qa
from app.services.search import hydrate
from ingest.submit import submit_paths
from ingest.worker import Worker

pytestmark = pytest.mark.slow

TOPICS = ["salary bands and bonus rules", "data centre access badges", "travel expense limits per night",
          "parental leave and sick days", "procurement approval thresholds", "incident response on-call duty"]


def test_two_users_two_collections_every_query_zero_leaks(container, tmp_path):
    for name in ("finance", "security"):
        folder = tmp_path / name
        folder.mkdir()
        for i, topic in enumerate(TOPICS):
            (folder / f"{name}-{i}.txt").write_text(f"{name.title()} handbook, part {i}: rules about {topic}. "
                                                    f"The {name} team owns this document about {topic}.")
        list(submit_paths(container, [folder], name))
    Worker(container).run_once()
    with container.sessions.begin() as s:
        accounts.add_user(s, "fiona", "staff", "fiona-password-1")
        accounts.add_user(s, "sam", "staff", "sam-password-1")
        accounts.add_user(s, "nobody", "staff", "nobody-password-1")
        accounts.grant(s, "finance", user="fiona")
        accounts.grant(s, "security", user="sam")
        cols = {c.name: c.id for c in accounts.list_collections(s)}
        chunk_col = dict(s.execute(select(Chunk.id, Chunk.collection_id)).all())
    index = container.search_index
    queries = [*TOPICS, "finance", "security", "handbook", "rules", "team", "document"]
    for user, own in (("fiona", "finance"), ("sam", "security"), ("nobody", None)):
        caller = qa.caller_for(container, user, "cli")
        for q in queries:
            for k in (1, 5, 50, 1000):
                hits = index.search(q, k, set(caller.collection_ids))
                got = {chunk_col[h.chunk_id] for h in hits}
                assert got <= ({cols[own]} if own else set()), (user, q, k)
                if own:
                    assert hits, (user, q, k)  # filtering happens before the cut: k=1 still finds their own
    with container.sessions() as s:  # admins read everything
        admin = qa.caller_for(container, "admin", "cli")
        assert {p.collection for p in hydrate(container, s, index.search("rules", 50, set(admin.collection_ids)))} \
            == {"finance", "security"}


def test_disabled_user_reads_nothing(container):
    with container.sessions.begin() as s:
        accounts.add_collection(s, "x")
        accounts.add_user(s, "dora", "staff", "dora-password-1")
        accounts.grant(s, "x", user="dora")
        accounts.set_disabled(s, "dora")
        user = accounts.get_user(s, "dora")
        assert accounts.readable_collection_ids(s, user) == set()
