"""Motor: a non-blocking MongoDB driver for Tornado and asyncio.

Motor runs PyMongo's synchronous driver in greenlets that yield to the event loop
whenever PyMongo would block.  Import the classes for your framework from
:mod:`motor.motor_asyncio` (``AsyncIOMotorClient``) or :mod:`motor.motor_tornado`
(``MotorClient``).
"""

from motor._version import __version__

version = __version__

__all__ = ["__version__", "version"]
