"""The store's location read alone (``executor rollback``) agrees with the full settings, and stands alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.config import load_settings
from executor.errors import ConfigError
from executor.locations import default_home, store_location
from tests.conftest import Cli, git

SEED_003 = "fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9"
VALUES = st.one_of(st.none(), st.sampled_from(["", "a", "b"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env_home=VALUES, file_home=VALUES, env_url=VALUES, file_url=VALUES, named_config=st.booleans())
def test_the_store_location_is_the_one_the_full_settings_give(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env_home: str | None,
    file_home: str | None,
    env_url: str | None,
    file_url: str | None,
    named_config: bool,
) -> None:
    """Each of home and database URL unset, empty or set, in the environment and in the file."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # where the default home is
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "named.toml" if named_config else home / "config.toml"
    lines = [
        f'{key} = "{value and tmp_path / value}"'
        for key, value in (("home", file_home), ("database_url", file_url))
        if value is not None
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {}
    for name, value in (("EXECUTOR_HOME", env_home), ("EXECUTOR_DATABASE_URL", env_url)):
        if value is not None:
            env[name] = value and str(tmp_path / value)
    if named_config:
        env["EXECUTOR_CONFIG"] = str(config)
    location = store_location(env)
    assert location == load_settings(env).store
    assert location.database_url != ""


def test_a_store_setting_of_the_wrong_type_names_the_file(executor_home: Path) -> None:
    executor_home.mkdir()
    (executor_home / "config.toml").write_text("database_url = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid setting 'database_url' in .*config\.toml"):
        store_location()
    (executor_home / "config.toml").write_text("database_url = [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file"):
        store_location()


def test_rollback_is_not_stopped_by_an_unrelated_bad_setting(
    run_cli: Cli, executor_home: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    executor_home.mkdir()
    (executor_home / "config.toml").write_text("[sandbox]\nmemory_mib = 1\n", encoding="utf-8")
    listed = run_cli("list")
    assert listed.exit_code == 2
    assert "invalid setting 'sandbox.memory_mib'" in listed.output
    rolled = run_cli("rollback", SEED_003, "--repo", repo)
    assert rolled.exit_code == 2
    assert f"proposal {SEED_003} was never rolled out" in rolled.output
