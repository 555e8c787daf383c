"""Motor's test suite: server launcher (:mod:`test.server`), fixtures and tests."""
