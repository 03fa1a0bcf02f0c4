"""Every read now lives in its domain's `selectors.py` (customers, touchpoints, responses, promoters,
followups, privacy); this module re-exports them while callers move over. New code imports the
domain module itself.
"""

from .customers.selectors import *  # noqa: F403
from .followups.selectors import *  # noqa: F403
from .privacy.selectors import *  # noqa: F403
from .promoters.selectors import *  # noqa: F403
from .responses.selectors import *  # noqa: F403
from .responses.sql import *  # noqa: F403
from .touchpoints.selectors import *  # noqa: F403
