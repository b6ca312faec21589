"""Services behind the browser UI: sign-in and sessions, chat helpers, document and user
administration, the query log. Pages in ui/ call these and never open a database session."""
