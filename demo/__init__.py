"""Motor's demo: a media board on Tornado, Motor and GridFS.

Run it with ``bash demo/run.sh`` (serve until Ctrl-C) or ``bash demo/run.sh --self-test``.
:mod:`demo.app` is the application, :mod:`demo.selftest` the scripted client that checks
it, :mod:`demo.media` makes the sample files, and ``python -m demo`` (:mod:`demo.__main__`)
starts a database server and the app.
"""
