"""The Streamlit web UI. `kb serve` runs ui/app.py; pages live in ui/views/."""
