"""Built-in python plugin for proposal-executor; the hooks are in ``executor_python.plugin``."""
