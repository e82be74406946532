"""The launcher state machine, re-exported from the pure contract.

The table lives in :mod:`bvisor.contract.transcript` so that replay can check recorded
transcripts without importing the launcher; the launcher uses the very same definition.
"""

from bvisor.contract.transcript import *  # noqa: F403
from bvisor.contract.transcript import __all__ as __all__
