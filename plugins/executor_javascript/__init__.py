"""Built-in javascript plugin for proposal-executor; the hooks are in ``executor_javascript.plugin``."""
