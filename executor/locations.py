"""Where the executor's settings and state live: the config file, the home directory, the store.

Read here without validating the rest of the settings (no pydantic), for two
reasons: ``executor rollback`` starts ~60 ms sooner without it, and an
operator undoing a rollout is not stopped by an unrelated bad setting (a
sandbox limit, a plugin table). ``executor.config`` builds every other
command's settings from the same sources, in the same order: built-in
defaults, then the config file, then ``EXECUTOR_<FIELD>`` variables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from executor.errors import ConfigError

APP_NAME = "proposal-executor"
ENV_PREFIX = "EXECUTOR_"


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class ConfigFile:
    """The operator's config file (``EXECUTOR_CONFIG``, else ``<home>/config.toml``) and its tables."""

    path: Path
    values: dict[str, object]


def read_config_file(env: Mapping[str, str], home: Path) -> ConfigFile:
    """The config file for ``home`` (empty when there is none); ``ConfigError`` naming a bad one."""
    named = env.get(ENV_PREFIX + "CONFIG") or None
    path = Path(named or home / "config.toml")
    if not path.is_file():
        if named is not None:
            raise ConfigError(f"config file {path} named by {ENV_PREFIX}CONFIG does not exist")
        return ConfigFile(path, {})
    try:
        return ConfigFile(path, tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def env_home(env: Mapping[str, str]) -> Path | None:
    value = env.get(ENV_PREFIX + "HOME")
    return Path(value) if value else None


@dataclass(frozen=True)
class StoreLocation:
    """Where the state store is: ``database_url`` (an SQLAlchemy URL), else SQLite in ``home``."""

    home: Path
    database_url: str | None = None


def store_location(
    environ: Mapping[str, str] | None = None, config: ConfigFile | None = None
) -> StoreLocation:
    """The store's place: ``EXECUTOR_HOME`` / ``EXECUTOR_DATABASE_URL``, else the config file, else defaults.

    Only these two settings are checked. An empty value counts as unset, in
    the environment and in the file alike. ``config``: the file already read
    for this environment (``load_settings`` passes it).
    """
    env = os.environ if environ is None else environ
    home = env_home(env) or default_home()
    config = config if config is not None else read_config_file(env, home)
    values: dict[str, str | None] = {}
    for name in ("home", "database_url"):
        value: object = env.get(ENV_PREFIX + name.upper()) or config.values.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"invalid setting {name!r} in {config.path}: Input should be a valid string")
        values[name] = value or None
    return StoreLocation(Path(values["home"]) if values["home"] else home, values["database_url"])
