"""Every write and side effect of the survey loop now lives in its domain's `services.py`
(access, customers, invitations, responses, promoters, followups, dashboard, privacy).

This module re-exports them while callers move over (as Zulip did when it split zerver):
new code imports the domain module itself.
"""

from .access.services import *  # noqa: F403
from .core.sweeps import EMAIL_CLAIM_TIMEOUT, SWEEP_BATCH, SWEEP_GRACE, SendFailed  # noqa: F401
from .customers.services import *  # noqa: F403
from .dashboard.services import *  # noqa: F403
from .followups.services import *  # noqa: F403
from .invitations.services import *  # noqa: F403
from .privacy.services import *  # noqa: F403
from .promoters.rules import COUPON_PER_CUSTOMER_WINDOW, PROMOTER_WINDOW  # noqa: F401
from .promoters.services import *  # noqa: F403
from .responses.services import *  # noqa: F403
