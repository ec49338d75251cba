"""SPEC INST-1, INST-2: the command and environment of an instance."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gfe_proxy import launch
from gfe_proxy.config import AppConfig, BasicScaling, Handler

ROOT = Path("/srv/app")


def cfg(**kw: object) -> AppConfig:
    base: dict[str, object] = {"path": ROOT / "app.yaml", "root": ROOT, "runtime": "python312"}
    base.update(kw)
    return AppConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entrypoint", "argv"),
    [
        ("uvicorn main:app --port $PORT", ("uvicorn", "main:app", "--port", "8123")),
        ("gunicorn -b :${PORT} main:app", ("gunicorn", "-b", ":8123", "main:app")),
        ("python server.py", ("python", "server.py")),
    ],
    ids=["dollar-port", "braced-port", "no-port"],
)
def test_inst_1_entrypoint_runs_as_argv_with_port(entrypoint: str, argv: tuple[str, ...]) -> None:
    got, shim = launch.command(cfg(entrypoint=entrypoint), port=8123)
    assert got == argv
    assert shim is False


def test_inst_1_entrypoint_with_shell_syntax_runs_in_sh() -> None:
    got, _ = launch.command(cfg(entrypoint="cd src && gunicorn main:app -b :$PORT"), port=1)
    assert got == ("/bin/sh", "-c", "cd src && gunicorn main:app -b :$PORT")


def test_inst_1_gen2_without_entrypoint_runs_gunicorn_main_app() -> None:
    argv, shim = launch.command(cfg(), port=9000)
    assert argv[:3] == (sys.executable, "-m", "gunicorn")
    assert argv[-1] == "main:app"
    assert "127.0.0.1:9000" in argv
    assert shim is False


def test_inst_1_gen1_runs_the_shim_with_threads_from_threadsafe() -> None:
    app = cfg(
        runtime="python27", threadsafe=False, handlers=(Handler(url="/.*", script="main.app"),)
    )
    argv, shim = launch.command(app, port=9000)
    assert shim is True
    assert argv[-1] == launch.SHIM_APP
    assert argv[argv.index("--threads") + 1] == "1"  # SPEC INST-4: threadsafe false -> 1


def test_inst_1_gen2_with_module_scripts_uses_the_shim() -> None:
    app = cfg(handlers=(Handler(url="/.*", script="main.app"),))
    assert launch.uses_shim(app)
    assert not launch.uses_shim(cfg(handlers=(Handler(url="/.*", script="auto"),)))


def _env(app: AppConfig) -> dict[str, str]:
    return launch.environment(
        app,
        port=8081,
        instance_id="i-1",
        gae_instance="abc123",
        deployment_id="42",
        project="proj",
        base={"PATH": "/usr/bin", "HOME": "/root"},
    )


def test_inst_2_gen2_environment() -> None:
    env = _env(cfg(service="api", version="v1", env_variables=(("FOO", "bar"),)))
    assert env["GAE_ENV"] == "standard"
    assert env["GAE_SERVICE"] == "api"
    assert env["GAE_VERSION"] == "v1"
    assert env["GAE_RUNTIME"] == "python312"
    assert env["GAE_INSTANCE"] == "abc123"
    assert env["GAE_DEPLOYMENT_ID"] == "42"
    assert env["GAE_APPLICATION"] == "s~proj"
    assert env["GOOGLE_CLOUD_PROJECT"] == "proj"
    assert env["GAE_MEMORY_MB"] == "384"  # F1, gen2
    assert env["PORT"] == "8081"
    assert env["FOO"] == "bar"
    assert env["HOME"] == "/root"
    assert env["PATH"].endswith(":/usr/bin")
    assert "CURRENT_VERSION_ID" not in env


def test_inst_2_gen1_extras_and_memory_by_class() -> None:
    env = _env(cfg(runtime="python27", threadsafe=True, scaling=BasicScaling(), application="app"))
    assert env["GAE_MEMORY_MB"] == "256"  # B2 default for basic scaling, gen1 figure
    assert env["CURRENT_VERSION_ID"].endswith(".42")
    assert env["SERVER_SOFTWARE"].startswith("Development/")
    assert env["AUTH_DOMAIN"] == "gmail.com"
    assert env["GOOGLE_CLOUD_PROJECT"] == "app"


def test_inst_2_platform_variables_beat_app_variables() -> None:
    env = _env(cfg(env_variables=(("PORT", "1"),)))
    assert env["PORT"] == "8081"
