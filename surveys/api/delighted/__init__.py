"""The Delighted-compatible API under /v1/ (see views.py)."""
