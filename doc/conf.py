"""Sphinx configuration for Motor's documentation."""

import re
from pathlib import Path

_version_file = Path(__file__).resolve().parent.parent / "motor" / "_version.py"
_match = re.search(r'__version__ = "([^"]+)"', _version_file.read_text())
assert _match is not None, f"no __version__ in {_version_file}"

project = "Motor"
author = "Motor developers"
copyright = "Motor developers"
version = release = _match.group(1)

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"

# Broken cross-references are errors (the docs build runs with -W): every :doc:, :ref:
# and reference to Motor's own documented API (``motor.…``, or a Motor class named under
# ``currentmodule``: ``AsyncIOMotor…``, ``Motor…``) must resolve.  References into PyMongo,
# BSON, the standard library and Motor's private helpers (they appear in signatures and
# in the docstrings Motor shares with PyMongo) are not checked: this build has no
# inventory of those projects' docs.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!motor[.]|AsyncIOMotor|Motor[A-Z]).*"),
    (r"py:.*", r"motor[.](core|cursors|sessions|sync_code|_http)[.](Agnostic\w*|_\w+)"),
    (r"py:.*", r"motor[.]_\w+"),
]
html_theme_options = {"page_width": "1150px"}
