"""The worker's settings: command-line flags, then ``SYMPHONY_AGENT_*`` variables, then a TOML file, then defaults.

Every option has all three spellings: ``--poll-interval 2``, ``SYMPHONY_AGENT_POLL_INTERVAL=2``,
``poll_interval = 2`` in the file given by ``--config`` / ``SYMPHONY_AGENT_CONFIG``. A bad value, an
unknown key in the file or an unreadable key file raises ``ConfigError`` naming where it came from.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the setting and where it came from."""


def _positive(kind: type) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        number = _number(kind, value)
        if number <= 0:
            raise ValueError(f"must be more than 0, not {value!r}")
        return number

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _non_negative(kind: type) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        number = _number(kind, value)
        if number < 0:
            raise ValueError(f"must be 0 or more, not {value!r}")
        return number

    parse.__name__ = f"non-negative {kind.__name__}"
    return parse


def _number(kind: type, value: Any) -> Any:
    if isinstance(value, bool) or (not isinstance(value, str | int | float)):
        raise ValueError(f"must be a number, not {value!r}")
    if kind is int and isinstance(value, float):
        raise ValueError(f"must be a whole number, not {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"must be a {'whole ' if kind is int else ''}number, not {value!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value.strip()


def _url(value: Any) -> str:
    url = _text(value).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, not {value!r}")
    return url


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _modules(value: Any) -> list[str]:
    """A list of module names: a TOML list, or a comma-separated string (the environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"must be a list of module names, not {value!r}")
    return [item.strip() for item in items if item.strip()]


def _log_level(value: Any) -> str:
    level = _text(value).lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return level


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag_kind: str = "value"  # "value", "switch" (--demo) or "append" (--handlers, repeatable)
    metavar: str | None = None
    in_file: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "SYMPHONY_AGENT_" + self.name.upper()


OPTIONS = [
    Option("url", _url, None, "Symphony's base URL, e.g. https://symphony.example.com", metavar="URL"),
    Option("key_file", _text, None, "read the agent's API key from this file", metavar="PATH"),
    Option(
        "key",
        _text,
        None,
        "the agent's API key; prefer --key-file or the environment (a command line is visible to local users)",
        metavar="KEY",
    ),
    Option("config", _text, None, "read settings from this TOML file", metavar="PATH", in_file=False),
    Option(
        "handlers",
        _modules,
        [],
        "import MODULE, which registers handlers with @symphony_agent.handler('kind'); repeatable "
        "(environment: comma-separated)",
        flag_kind="append",
        metavar="MODULE",
    ),
    Option("demo", _bool, False, "also run the demo handlers echo, word_count and sleep", flag_kind="switch"),
    Option("once", _bool, False, "claim what is there, run it, exit", flag_kind="switch"),
    Option("concurrency", _positive(int), 1, "tasks run at once", metavar="N"),
    Option("poll_interval", _positive(float), 1.0, "seconds between claims while idle (±20%% jitter)", metavar="S"),
    Option(
        "wait_seconds",
        _non_negative(int),
        20,
        "while idle, ask the server to hold each claim up to S seconds until a task arrives (long poll); "
        "0 turns it off (poll every --poll-interval); a server that does not wait is polled",
        metavar="S",
    ),
    Option(
        "claim_url",
        _url,
        None,
        "base URL for claims, where the server's ASGI process answers them when no proxy routes "
        "/api/v1/agent/claim/ there (make run: http://127.0.0.1:8001)",
        metavar="URL",
    ),
    Option("heartbeat_interval", _positive(float), 15.0, "seconds between heartbeats", metavar="S"),
    Option("lease_seconds", _positive(int), 60, "lease asked for each task, extended every third of it", metavar="S"),
    Option("grace_seconds", _non_negative(float), 10.0, "on SIGTERM, how long running tasks may finish", metavar="S"),
    Option("max_backoff", _positive(float), 30.0, "longest wait between retries while the server is down", metavar="S"),
    Option("timeout", _positive(float), 10.0, "seconds to wait for each answer of the server", metavar="S"),
    Option("log_level", _log_level, "info", "debug, info, warning or error (idle polls log at debug)", metavar="LEVEL"),
]
_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    url: str
    key: str = field(repr=False)
    handlers: list[str] = field(default_factory=list)
    demo: bool = False
    once: bool = False
    concurrency: int = 1
    poll_interval: float = 1.0
    wait_seconds: int = 20
    claim_url: str | None = None
    heartbeat_interval: float = 15.0
    lease_seconds: int = 60
    grace_seconds: float = 10.0
    max_backoff: float = 30.0
    timeout: float = 10.0
    log_level: str = "info"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag whose default is None, so ``load`` can tell a given flag from a default."""
    for option in OPTIONS:
        shown = "required" if option.name == "url" else f"default: {_shown(option.default)}"
        help_text = f"{option.help} ({shown}; env {option.env})"
        if option.flag_kind == "switch":
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=help_text)
        elif option.flag_kind == "append":
            parser.add_argument(option.flag, action="append", default=None, metavar=option.metavar, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, metavar=option.metavar, help=help_text)


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "off" if not default else "on"
    if isinstance(default, list):
        return "none" if not default else ",".join(default)
    return str(default)


def load(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge the sources (flags > environment > file > defaults) into ``Settings``. Raises ``ConfigError``."""
    environ = os.environ if environ is None else environ
    layers = [
        (
            "the command line",
            {name: _flag_value(name, flags[name]) for name in _BY_NAME if flags.get(name) is not None},
        ),
        (
            "the environment",
            {name: environ[option.env] for name, option in _BY_NAME.items() if environ.get(option.env)},
        ),
    ]
    config_path = _first(layers, "config")
    if config_path is not None:
        layers.append((str(config_path), _read_file(str(config_path))))
    values: dict[str, Any] = {}
    for name, option in _BY_NAME.items():
        if name in ("key", "key_file", "config"):
            continue
        for source, layer in layers:
            if name in layer:
                values[name] = _parse(option, layer[name], source)
                break
        else:
            values[name] = option.default
    if values["url"] is None:
        raise ConfigError("no server URL: give --url, SYMPHONY_AGENT_URL, or url in the config file")
    return Settings(key=_resolve_key(layers), **values)


def _flag_value(name: str, value: Any) -> Any:
    # Repeated --handlers give a list of strings, each of which may itself be comma-separated.
    return [part for item in value for part in _modules(item)] if name == "handlers" else value


def _first(layers: list[tuple[str, dict[str, Any]]], name: str) -> Any:
    for _, layer in layers:
        if name in layer:
            return layer[name]
    return None


def _parse(option: Option, value: Any, source: str) -> Any:
    try:
        return option.parse(value)
    except ValueError as exc:
        spelling = {"the command line": option.flag, "the environment": option.env}.get(source, option.name)
        where = "" if source in ("the command line", "the environment") else f" in {source}"
        raise ConfigError(f"{spelling}{where} {exc}") from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    values = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(key for key in values if key not in _BY_NAME or not _BY_NAME[key].in_file)
    if unknown:
        raise ConfigError(f"unknown setting(s) in the config file {path}: {', '.join(unknown)}")
    return values


def _resolve_key(layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The key from the first source that gives one, as ``key`` or as ``key_file`` (not both)."""
    for source, layer in layers:
        if "key" in layer and "key_file" in layer:
            raise ConfigError(f"{source} gives both a key and a key file: give one")
        if "key" in layer:
            return _parse(_BY_NAME["key"], layer["key"], source)
        if "key_file" in layer:
            return _read_key_file(_parse(_BY_NAME["key_file"], layer["key_file"], source))
    raise ConfigError("no agent key: give --key-file, SYMPHONY_AGENT_KEY or SYMPHONY_AGENT_KEY_FILE")


def _read_key_file(path: str) -> str:
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the key file {path} is not text") from None
    if not key:
        raise ConfigError(f"the key file {path} is empty")
    return key
