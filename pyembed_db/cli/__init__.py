"""The ``pyembed-db`` command line."""
