"""Docker sandboxes: where everything a proposal contains is run, and nothing else.

Public API for plugins: ``Sandboxes`` (the engine, the image and the warm pool)
and the ``Use`` it lends out, with ``CommandResult`` and ``SqlResult``.
"""
