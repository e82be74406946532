"""Suite-wide settings.

Commands the tests start never use or start a per-user ``bvisor serve`` (one left from an
earlier run, or started by a test, would make results depend on order);
``tests/front/test_service.py`` starts its own in a private directory and opts in.
"""

from __future__ import annotations

import os

os.environ["BVISOR_SERVE"] = "0"
