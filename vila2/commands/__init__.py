"""One module per ``vila2`` sub-command; each defines a click command named ``command``.

Heavy libraries are imported inside the command functions, never at module level.
"""
