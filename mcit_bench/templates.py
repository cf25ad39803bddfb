"""Conversation templates: how an instruction and its image become the text an MLLM reads.

The native LLaVA-1.5 pipelines (UCIT, CoIN) use vicuna_v1: system prompt, ``USER: <image>\\n{text}
ASSISTANT:``, the answer, then ``</s>``. The built-in tiny backbone uses the same layout without
the system prompt (shorter sequences on CPU).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str = "USER: "
    assistant: str = " ASSISTANT:"
    image_first: bool = True

    def prompt(self, instruction: str, image_token: str) -> str:
        """The text up to and including the assistant tag (the generation starts after it)."""
        body = f"{image_token}\n{instruction}" if self.image_first else f"{instruction}\n{image_token}"
        head = f"{self.system} " if self.system else ""
        return f"{head}{self.user}{body}{self.assistant}"


TEMPLATES: dict[str, Template] = {
    "vicuna_v1": Template("vicuna_v1", VICUNA_SYSTEM),
    "plain_chat": Template("plain_chat", ""),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise UserError(f"unknown conversation template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
