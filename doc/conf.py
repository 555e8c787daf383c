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
