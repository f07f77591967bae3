"""Operator configuration: defaults, overridden by a TOML file, overridden by env.

Sources, later ones winning: built-in defaults; ``$EXECUTOR_HOME/config.toml``
(or the file named by ``EXECUTOR_CONFIG``); ``EXECUTOR_<FIELD>`` environment
variables. ``executor.locations`` reads the file and the store's place (home,
database URL); proposals never influence any of it.

Hand-written rather than pydantic-settings: that package imports asyncio and
costs ~190 ms per command on these machines for what is twenty lines here.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from executor.content import MIB, Limits
from executor.errors import ConfigError
from executor.locations import (
    ENV_PREFIX,
    StoreLocation,
    default_home,
    env_home,
    read_config_file,
    store_location,
)

SANDBOX_PREFIX = ENV_PREFIX + "SANDBOX_"


class SandboxSettings(BaseModel):
    """Limits and pool size of Docker sandboxes (``[sandbox]`` in config.toml).

    Only the operator sets these; nothing in a proposal reaches them. Bounds keep
    every limit in force: none of them can be switched off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mib: int = Field(default=1024, ge=128, le=65536, description="Memory, swap equal to it.")
    pids: int = Field(default=256, ge=32, le=32768, description="Process and thread limit.")
    cpus: float = Field(default=1.0, ge=0.1, le=64, description="CPU quota, in CPUs.")
    command_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="Wall-clock seconds per command before it is killed."
    )
    output_cap_bytes: int = Field(
        default=1 * MIB, ge=4096, le=256 * MIB, description="Captured output per stream per command."
    )
    tmp_mib: int = Field(default=64, ge=8, le=65536, description="The scratch tmpfs (/tmp).")
    state_mib: int = Field(default=512, ge=64, le=65536, description="The tmpfs holding PostgreSQL's data.")
    warm_pool: int = Field(default=2, ge=1, le=32, description="Warm sandboxes kept running.")
    image: str | None = Field(default=None, description="Image to use instead of the built definition.")


class PluginSettings(BaseModel):
    """Which plugins run, and what may pass unvalidated (``[plugins]`` in config.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] | None = Field(default=None, description="Only these plugins load (default: all).")
    deny: list[str] = Field(default_factory=list, description="These plugins never load.")
    unvalidated: list[str] = Field(
        default_factory=list,
        description="Globs of paths that may pass with no plugin claiming them (e.g. 'docs/**').",
    )
    trace: bool = Field(default=False, description="Trace every hook call to stderr.")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=default_home, description="State directory.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default: SQLite in home."
    )
    review_threshold: int = Field(
        default=30, ge=0, description="Severity at or above which approval needs --by."
    )
    max_file_bytes: int = Field(default=1 * MIB, gt=0)
    max_proposal_bytes: int = Field(default=10 * MIB, gt=0)
    max_report_bytes: int = Field(
        default=16 * MIB, gt=0, description="Reports larger than this are not read."
    )

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    plugin: dict[str, dict[str, object]] = Field(
        default_factory=dict, description="Per-plugin options: [plugin.<name>] tables."
    )

    @property
    def limits(self) -> Limits:
        return Limits(max_file_bytes=self.max_file_bytes, max_proposal_bytes=self.max_proposal_bytes)

    @property
    def store(self) -> StoreLocation:
        return StoreLocation(self.home, self.database_url)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for this process; raises ``ConfigError`` naming the bad source."""
    env = dict(os.environ if environ is None else environ)
    from_env: dict[str, object] = {
        name: env[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if name not in ("sandbox", "plugins", "plugin") and env.get(ENV_PREFIX + name.upper())
    }
    sandbox_env = {
        name: env[SANDBOX_PREFIX + name.upper()]
        for name in SandboxSettings.model_fields
        if env.get(SANDBOX_PREFIX + name.upper())
    }
    home = env_home(env) or default_home()
    config = read_config_file(env, home)
    config_path, from_file = config.path, config.values
    store = store_location(env, config)  # the place rollback reads alone, by the same rules
    if sandbox_env:
        file_sandbox = from_file.get("sandbox", {})
        from_env["sandbox"] = {**(file_sandbox if isinstance(file_sandbox, dict) else {}), **sandbox_env}
    try:
        return Settings.model_validate(
            {**from_file, **from_env, "home": store.home, "database_url": store.database_url}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        if field.startswith("sandbox.") and field.partition(".")[2] in sandbox_env:
            source = f"environment variable {SANDBOX_PREFIX}{field.partition('.')[2].upper()}"
        elif field in from_env:
            source = f"environment variable {ENV_PREFIX}{field.upper()}"
        else:
            source = f"{config_path}"
        raise ConfigError(f"invalid setting {field!r} in {source}: {first['msg']}") from exc
