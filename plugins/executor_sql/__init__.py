"""Built-in sql plugin for proposal-executor; the hooks are in ``executor_sql.plugin``."""
