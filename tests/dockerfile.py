"""A small Dockerfile reader for the artifact tests (no Docker engine on this machine)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ARG defaults and the stages, continuation lines joined, comments dropped."""
    lines: list[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            base = parts[0]
            for name, value in global_args.items():
                base = base.replace(f"${{{name}}}", value)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG":
                name, _, default = args.partition("=")
                global_args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return global_args, stages


def copy_sources(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    """Flags (--from, --chown) and the source paths of a COPY."""
    words = shlex.split(instruction.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words[:-1]


def ignore_patterns(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        bare = pattern.rstrip("/")
        if fnmatch.fnmatch(relative, bare) or fnmatch.fnmatch(relative, bare + "/*"):
            return True
        if bare.startswith("**/"):
            tail = bare[3:]
            parts = relative.split("/")
            for i in range(len(parts)):
                if fnmatch.fnmatch("/".join(parts[i:]), tail) or fnmatch.fnmatch(parts[i], tail):
                    return True
    return False


def json_form(args: str) -> list[str] | None:
    """The exec form of CMD/ENTRYPOINT/HEALTHCHECK CMD as a list, or None for the shell form."""
    import json

    match = re.search(r"(\[.*\])\s*$", args)
    if not match:
        return None
    return json.loads(match.group(1))
