"""Motor's version, and the names Motor 3.x's ``motor._version`` had."""

import re

__version__ = "3.8.0.dev0"


def get_version_tuple(version: str) -> tuple[int | str, ...]:
    """``"3.7.1"`` -> ``(3, 7, 1)``; ``"3.8.0.dev0"`` -> ``(3, 8, 0, ".dev0")``."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)(.*)", version)
    if match is None:
        if not re.match(r"\d+\.\d+", version):
            raise ValueError("Could not parse version")
        return tuple(int(part) for part in version.split("."))
    major, minor, patch, rest = match.groups()
    parts: list[int | str] = [int(major), int(minor), int(patch)]
    return (*parts, rest) if rest else tuple(parts)


#: The version as a tuple, for instance ``(3, 8, 0, ".dev0")``.
version_tuple = get_version_tuple(__version__)
version = __version__


def get_version_string() -> str:
    """The version, as a string (Motor 3.x compatibility)."""
    return __version__
