"""FiftyOne plugin @multireader/disagreement: keep every radiologist's label, measure
where they disagree.

FiftyOne imports this file; it only registers operators and panels. The domain logic is
the plain ``multireader`` package beside it, put on ``sys.path`` here so that the App,
delegated workers and SDK scripts all import the one same module.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from .operators import OPERATORS  # noqa: E402
from .panels import PANELS  # noqa: E402


def register(p):
    for cls in OPERATORS + PANELS:
        p.register(cls)
