"""kb backup and kb restore on a real data dir: the first N SciFact abstracts ingested, then the two
commands timed as an operator runs them (subprocesses), with the bytes each side holds.

    python bench/backup_restore.py ../shared/data/beir_scifact/corpus.jsonl --docs 1000 --work /tmp/kb-bench
    (add --database-url postgresql+psycopg://... and --restore-url ... for PostgreSQL; both must be empty)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PASS = "bench passphrase, long enough"  # noqa: S105 (a benchmark's throwaway backup)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def kb(env: dict, *args: str, stdin: str | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "app", *args], env=env, input=stdin, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"kb {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kb-bench-backup"))
    ap.add_argument("--database-url")
    ap.add_argument("--restore-url")
    ap.add_argument("--pii", action="store_true", help="scrub PII while ingesting (slower; same data dir size)")
    a = ap.parse_args()
    work = a.work
    src, data, backup, restored = work / "src", work / "data", work / "backup", work / "restored"
    env = {**os.environ, "KB_DATA_DIR": str(data), "KB_PII__ENABLED": "true" if a.pii else "false"}
    if a.database_url:
        env["KB_DATABASE_URL"] = a.database_url
    if not (data / "kb.sqlite3").exists() and not a.database_url or not (work / "ingested").exists():
        src.mkdir(parents=True, exist_ok=True)
        with open(a.corpus) as f:
            for _, line in zip(range(a.docs), f, strict=False):
                d = json.loads(line)
                (src / f"{d['_id']}.txt").write_text(f"{d['title']}\n\n{d['text']}\n")
        kb(env, "init", "--admin-password-stdin", stdin="bench-admin-password\n")
        secs, out = kb(env, "ingest", str(src), "--wait", "--json")
        (work / "ingested").write_text(out)
        print(f"ingested {a.docs} docs in {secs:.1f} s")
    subprocess.run(["rm", "-rf", str(backup), str(restored)], check=True)
    t_backup, out = kb(env, "backup", str(backup), "--passphrase-stdin", "--json", stdin=PASS + "\n")
    made = json.loads(out)
    renv = {**env, "KB_DATA_DIR": str(restored)}
    renv.pop("KB_DATABASE_URL", None)
    if a.restore_url:
        renv["KB_DATABASE_URL"] = a.restore_url
    t_restore, out = kb(renv, "restore", str(backup), "--passphrase-stdin", "--json", stdin=PASS + "\n")
    done = json.loads(out)
    t_norebuild = None
    if not a.restore_url:  # a second restore without the index rebuild, to split the time
        subprocess.run(["rm", "-rf", str(restored)], check=True)
        t_norebuild, _ = kb(renv, "restore", str(backup), "--passphrase-stdin", "--json", "--no-rebuild",
                            stdin=PASS + "\n")
    data_bytes = du(data) - du(data / "models") if (data / "models").exists() else du(data)
    print(json.dumps({
        "docs": made["documents"], "chunks": made["chunks"], "audit_records": made["audit_records"],
        "database": made["database"], "data_dir_bytes_without_models": data_bytes,
        "backup_bytes": du(backup), "backup_files": made["files"],
        "backup_s": round(t_backup, 2), "backup_service_s": made["seconds"],
        "restore_s": round(t_restore, 2), "restore_service_s": done["seconds"],
        "restore_without_rebuild_s": round(t_norebuild, 2) if t_norebuild else None,
        "restored_audit_ok": done["audit_ok"], "indexed_chunks": done["indexed_chunks"],
    }, indent=1))


if __name__ == "__main__":
    main()
