"""The HTTP API: a third thin caller of app.services, beside the CLI and the web UI.

Routes parse the request, authenticate the API key into a Caller (app.services.api_keys), call one
service and render its result as JSON (or OpenAI-compatible server-sent events). Rules, SQL and
models live below; nothing here decides who may do what.
"""
