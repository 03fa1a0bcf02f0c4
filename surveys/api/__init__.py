"""The JSON APIs: our own under /api/v1/ (v1.py) and the Delighted-compatible one under /v1/ (delighted/)."""
