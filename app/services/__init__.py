"""The service layer: every user-visible action once, with its role check and audit record.

The CLI (app/cli), the web UI (ui/) and the HTTP API call these functions and only render what they
return. Services use the stages (ingest/, retrieval/, llm/) and the kernel (the rest of app/); nothing
below imports them.
"""
