"""How the beat sweeps work: the rows they pick up and when a claim counts as abandoned."""

from datetime import timedelta

# A row younger than this is left to the task enqueued when it was made; the sweep is for what got lost.
SWEEP_GRACE = timedelta(seconds=30)
# Rows one sweep enqueues at most; the next sweep takes the rest.
SWEEP_BATCH = 1000
# An email claimed this long ago and still not sent was dropped by a dead worker: it may be claimed again.
EMAIL_CLAIM_TIMEOUT = timedelta(minutes=10)


class SendFailed(Exception):
    """Sending failed for a reason that may pass (SMTP or network trouble)."""

    remaining: list = []  # in a batch: the ids not done yet, to retry
