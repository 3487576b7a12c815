"""Chat role tags rendered through the model's chat template (LANGUAGE.md section 8).

Prompts are built incrementally, so the template is not applied to a finished message
list: it is rendered once with sentinel messages to learn each role's header and footer
and the default system turn, which are then inserted wherever the role changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmq.runtime.backends.base import Vocabulary

_A, _B = "\u2060lmqA\u2060", "\u2060lmqB\u2060"


@dataclass(frozen=True)
class ChatFormat:
    """Text around each role's turns; ``default_system`` opens a conversation whose first
    turn is not a system turn (SmolLM2's template adds one). ``system`` is a specialist's
    system prompt (:meth:`with_system`)."""

    headers: dict[str, str]
    footers: dict[str, str]
    default_system: str = ""
    system: str = ""

    @classmethod
    def plain(cls) -> ChatFormat:
        """Without a template roles render as ``role: text`` lines."""
        roles = ("system", "user", "assistant")
        return cls({r: f"{r}: " for r in roles}, {r: "\n" for r in roles})

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary) -> ChatFormat:
        """The format of the vocabulary's chat template; :meth:`plain` without one, or
        when the template cannot render sentinel messages (never an error)."""
        try:
            return cls._from_template(vocabulary)
        except Exception:  # noqa: BLE001 - templates are arbitrary Jinja
            return cls.plain()

    @classmethod
    def _from_template(cls, vocabulary: Vocabulary) -> ChatFormat:
        def render(messages, generation=False) -> str:
            text = vocabulary.render_chat(messages, generation)
            if text is None:
                raise LookupError("no chat template")
            return text

        system_only = render([{"role": "system", "content": _A}])
        system_header, system_footer = system_only.split(_A)
        headers, footers = {"system": system_header}, {"system": system_footer}
        default_system = ""
        for role in ("user", "assistant"):
            pair = render([{"role": "system", "content": _A}, {"role": role, "content": _B}])
            between, footer = pair.split(_A)[1].split(_B)
            headers[role] = between[len(system_footer):]
            footers[role] = footer
        alone = render([{"role": "user", "content": _B}]).split(_B)[0]
        if alone.endswith(headers["user"]):
            default_system = alone[: len(alone) - len(headers["user"])]
        return cls(headers, footers, default_system)

    def with_system(self, prompt: str) -> ChatFormat:
        """This format with ``prompt`` opening every conversation: as the system turn of a
        chat (instead of the default one; a program's own system turn follows it in the
        same turn), as a leading paragraph of a plain prompt."""
        return replace(self, system=prompt)

    def transition(self, previous: str | None, role: str | None, opened: bool) -> str:
        """Text to insert when the role changes from ``previous`` to ``role``;
        ``opened`` says whether a conversation has been opened before."""
        if not opened and self.system:
            if role is None:
                return self.system + "\n\n"
            turn = self.headers["system"] + self.system
            return turn + "\n\n" if role == "system" else \
                turn + self.footers["system"] + self.headers[role]
        if previous == role:
            return ""
        text = self.footers.get(previous, "") if previous else ""
        if role is None:
            return text
        if not opened and role != "system":
            text += self.default_system
        return text + self.headers[role]
