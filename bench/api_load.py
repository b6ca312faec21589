"""Load on the HTTP API over loopback: 1, 4 and 16 concurrent clients asking /v1/chat/completions (and
searching /api/v1/search), bounded in requests and seconds. Reports p50/p95 latency, status counts, and
whether the excess queues (200 after waiting) or fails cleanly (503 with Retry-After). The load levels run
with the answer cache off (they measure generation); then the cache is turned on and each question asked
once more to fill it, and cache-hit latency is measured over HTTP (--cache-hits sequential requests, then
16 concurrent clients), with the server-side cache_ms (key, index state, opening the sealed entry).

A temporary kb (SQLite) is set up with a few policy documents and the small model (SmolLM2, from the
test models cache) unless --model names another GGUF; PII scrubbing is off (not what is measured).

    .venv/bin/python bench/api_load.py [--clients 1,4,16] [--requests 2] [--seconds 300] [--cache-hits 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from app.api.app import create_app  # noqa: E402
from app.services import api_keys  # noqa: E402
from app.services.caller import operator  # noqa: E402
from app.services.container import Container  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402
from ingest.submit import submit_paths  # noqa: E402
from ingest.worker import Worker  # noqa: E402
from llm.models import pull_small  # noqa: E402

DOCS = {
    "leave.md": "# Annual leave\n\nEmployees receive 25 days of paid annual leave per calendar year. Up to five "
                "unused days may be carried over and must be taken by 31 March of the following year.",
    "travel.md": "# Travel\n\nHotel costs are reimbursed up to 600 yuan per night in first-tier cities. Claims "
                 "must be filed within ten working days after the trip, with original invoices attached.",
    "security.md": "# Badges\n\nVisitors must wear a red badge and be escorted at all times in the data centre. "
                   "Lost badges are reported to the security desk within one hour.",
}
QUESTIONS = ["How many days of paid annual leave do employees receive?",
             "What is the hotel limit per night in first-tier cities?",
             "Within how many days must travel claims be filed?",
             "What colour badge do visitors wear?"]


def pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def level(url: str, key: str, clients: int, per_client: int, deadline: float, kind: str) -> dict:
    lat: list[float] = []
    codes: dict[str, int] = {}
    retry_after: set[str] = set()
    lock = threading.Lock()

    def run(i: int) -> None:
        with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as cl:
            for j in range(per_client):
                if time.monotonic() > deadline:
                    return
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                t = time.perf_counter()
                try:
                    if kind == "chat":
                        r = cl.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": q}]})
                    else:
                        r = cl.post(f"{url}/api/v1/search", json={"query": q, "k": 5})
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                dt = time.perf_counter() - t
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == "200":
                        lat.append(dt)
                    elif code == "503":
                        retry_after.add(r.headers.get("retry-after", ""))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = codes.get("200", 0)
    return {"kind": kind, "clients": clients, "requests": sum(codes.values()), "status": codes,
            "p50_s": pct(lat, 0.5), "p95_s": pct(lat, 0.95), "max_s": round(max(lat), 3) if lat else None,
            "ok_per_s": round(ok / wall, 2) if wall else None, "wall_s": round(wall, 1),
            "retry_after": sorted(retry_after),
            "errors_other_than_503": sum(v for k, v in codes.items() if k not in ("200", "503"))}


def cache_hits(url: str, key: str, n: int) -> dict:
    """Fill the cache with each question once, then time n sequential hits and 16 concurrent clients."""
    def ask(cl: httpx.Client, q: str) -> tuple[float, dict | None, int]:
        t = time.perf_counter()
        r = cl.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": q}]})
        dt = (time.perf_counter() - t) * 1000
        return dt, (r.json().get("kb") if r.status_code == 200 else None), r.status_code

    with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as cl:
        misses = [ask(cl, q)[0] for q in QUESTIONS]
        seq, server, not_cached = [], [], 0
        for i in range(n):
            dt, kb, _ = ask(cl, QUESTIONS[i % len(QUESTIONS)])
            seq.append(dt)
            if kb is None or kb.get("cached_from") is None:
                not_cached += 1
            else:
                server.append(kb["timings"]["cache_ms"])
    lat: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as cl:
            for j in range(max(1, n // 16)):
                dt, _, code = ask(cl, QUESTIONS[(i + j) % len(QUESTIONS)])
                with lock:
                    codes[str(code)] = codes.get(str(code), 0) + 1
                    if code == 200:
                        lat.append(dt)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"miss_ms": [round(x, 1) for x in misses],
            "sequential": {"requests": n, "p50_ms": pct(seq, 0.5), "p95_ms": pct(seq, 0.95), "not_cached": not_cached},
            "server_cache_ms_p50": pct(server, 0.5), "server_cache_ms_p95": pct(server, 0.95),
            "concurrent": {"clients": 16, "requests": sum(codes.values()), "status": codes,
                           "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,4,16", help="Concurrency levels, comma-separated.")
    ap.add_argument("--requests", type=int, default=2, help="Questions per client per level.")
    ap.add_argument("--seconds", type=float, default=300, help="Time budget per level (no new requests after).")
    ap.add_argument("--pending", type=int, default=8, help="api.max_pending_answers for the run.")
    ap.add_argument("--model", type=Path, help="A GGUF to answer with (default: SmolLM2-135M from the cache).")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--models-cache", type=Path, default=Path(os.environ.get(
        "KB_TEST_MODELS_DIR", Path.home() / ".cache" / "kb-models")))
    ap.add_argument("--cache-hits", type=int, default=40,
                    help="Sequential cache-hit requests (0: skip the cache phase).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    results: list[dict] = []
    cache: dict | None = None
    with tempfile.TemporaryDirectory(prefix="kb-apiload-") as tmp:
        root = Path(tmp)
        llm: dict = {"max_tokens": args.max_tokens}
        if args.model:
            llm["model_path"] = args.model
        c = Container(Settings(data_dir=root / "data", database={"url": None}, pii={"enabled": False}, llm=llm,
                               api={"max_pending_answers": args.pending, "rate_limit_per_minute": 0},
                               cache={"answers": False}))
        init(c, "admin", "bench-admin-password")
        if not args.model:
            small = pull_small(args.models_cache)
            shutil.copy(small.path, c.settings.models_dir / small.path.name)
            shutil.copy(small.path.parent / "manifest.json", c.settings.models_dir / "manifest.json")
        (root / "docs").mkdir()
        for name, text in DOCS.items():
            (root / "docs" / name).write_text(text)
        list(submit_paths(c, [root / "docs"], "policies"))
        Worker(c).run_once()
        key = api_keys.create(c, operator("cli"), "admin", name="bench").secret
        server, thread, url = serve(create_app(c))
        try:
            with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as cl:  # warm model + index
                cl.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTIONS[0]}]})
            for kind in ("search", "chat"):
                for n in levels:
                    results.append(level(url, key, n, args.requests, time.monotonic() + args.seconds, kind))
                    if not args.json:
                        r = results[-1]
                        print(f"{kind:6} clients={n:<3} requests={r['requests']:<3} status={r['status']} "
                              f"p50={r['p50_s']} s p95={r['p95_s']} s ok/s={r['ok_per_s']}", flush=True)
            if args.cache_hits:
                c.settings.cache.answers = True  # read per question: the running server uses it from now on
                cache = cache_hits(url, key, args.cache_hits)
                if not args.json:
                    print(f"cache  sequential p50={cache['sequential']['p50_ms']} ms "
                          f"p95={cache['sequential']['p95_ms']} ms server cache_ms p50={cache['server_cache_ms_p50']}; "
                          f"16 clients p50={cache['concurrent']['p50_ms']} ms p95={cache['concurrent']['p95_ms']} ms "
                          f"status={cache['concurrent']['status']}", flush=True)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            c.engine.dispose()
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "model": str(args.model) if args.model else "SmolLM2-135M-Instruct Q4_1",
              "max_pending_answers": args.pending, "max_tokens": args.max_tokens,
              "query_cache": cache, "levels": results}
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
