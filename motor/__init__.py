"""Motor: a non-blocking MongoDB driver for Tornado and asyncio.

Motor runs PyMongo's synchronous driver in greenlets that yield to the event loop
whenever PyMongo would block.  Import the classes for your framework from
:mod:`motor.motor_asyncio` (``AsyncIOMotorClient``) or :mod:`motor.motor_tornado`
(``MotorClient``).  As in Motor 3.x, the Tornado classes are also exported from this
package (``motor.MotorClient``) when Tornado is installed.

The same core runs any synchronous PyMongo code without blocking the loop:
:func:`run_green` and :class:`GreenMongoClient` (see :mod:`motor.sync_code`).
:func:`detect_stalls` reports driver work that holds the loop (see
:mod:`motor.detector`; the environment variable ``MOTOR_DETECT_STALLS``, a threshold
in milliseconds, turns it on at import).
"""

from __future__ import annotations

import os

# motor.core first: it imports the cursor, session and encryption modules at its end,
# which import it (see the end of motor/core.py).
from motor import core  # noqa: F401
from motor._version import __version__, get_version_string, version, version_tuple
from motor.detector import detect_stalls, stop_detecting_stalls
from motor.detector import threshold_from_environment as _threshold_from_environment
from motor.sync_code import GreenMongoClient, green_coroutine, run_green

if os.environ.get("MOTOR_DETECT_STALLS"):
    detect_stalls(_threshold_from_environment(os.environ["MOTOR_DETECT_STALLS"]))

__all__ = [
    "GreenMongoClient",
    "__version__",
    "detect_stalls",
    "get_version_string",
    "green_coroutine",
    "run_green",
    "stop_detecting_stalls",
    "version",
    "version_tuple",
]

try:
    import tornado  # noqa: F401
except ImportError:  # pragma: no cover - Tornado is a dependency; kept optional here
    pass
else:
    from motor.motor_tornado import *  # noqa: F403
    from motor.motor_tornado import __all__ as _tornado_all

    __all__ += _tornado_all
