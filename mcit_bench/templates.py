"""Conversation templates: how an instruction and its image become the text an MLLM reads.

The native LLaVA-1.5 pipelines (UCIT, CoIN) use vicuna_v1: system prompt, ``USER: <image>\\n{text}
ASSISTANT:``, the answer, then ``</s>``. The built-in tiny backbone uses the same layout without
the system prompt (shorter sequences on CPU).

Other backbone families have their own native layouts: ``qwen2_vl`` (ChatML with the vision markers)
and ``instructblip`` (the bare instruction; the processor puts the query tokens before BOS).

Which template a run uses (first match wins): ``--set template=NAME``; the checkpoint sidecar
(``mcit_bench_backbone.json``, how the harness trained that checkpoint); the benchmark's native
template (``Benchmark.template``, e.g. vicuna_v1 for UCIT/CoIN) when the backbone is a LLaVA; the
backbone family's default (LLaVA: vicuna_v1).
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
    # Full layout with ``{image}`` and ``{instruction}`` placeholders; when set it replaces the fields above.
    pattern: str | None = None
    # What ``{image}`` becomes in ``pattern`` (``{token}`` = the image token); empty for text-only prompts.
    image_format: str = "{token}"
    # Text between the assistant tag and the answer (vicuna: "ASSISTANT: answer"; ChatML: none).
    answer_prefix: str = " "
    # False: the processor places the image tokens itself (InstructBLIP prepends its query tokens).
    image_in_text: bool = True
    # Layout of a later exchange of a multi-turn conversation (``{instruction}``), the text between the
    # previous answer's EOS and this answer; None: ``user + instruction + assistant`` (vicuna: "USER: ...
    # ASSISTANT:", as LLaVA's conversation after "</s>").
    turn_pattern: str | None = None

    def prompt(self, instruction: str, image_token: str | None) -> str:
        """The text up to and including the assistant tag (the generation starts after it).

        ``image_token=None`` builds a text-only prompt (records without an image, e.g. some ScienceQA
        questions), as the native LLaVA pipelines do.
        """
        image = image_token if (image_token is not None and self.image_in_text) else None
        if self.pattern is not None:
            # replace {image} first: an instruction that happens to contain "{image}" stays verbatim
            image_text = self.image_format.replace("{token}", image) if image is not None else ""
            return self.pattern.replace("{image}", image_text).replace("{instruction}", instruction)
        if image is None:
            body = instruction
        else:
            body = f"{image}\n{instruction}" if self.image_first else f"{instruction}\n{image}"
        head = f"{self.system} " if self.system else ""
        return f"{head}{self.user}{body}{self.assistant}"

    def turn(self, instruction: str) -> str:
        """The text of a later exchange up to and including its assistant tag (no system prompt, no image)."""
        if self.turn_pattern is not None:
            return self.turn_pattern.replace("{instruction}", instruction)
        return f"{self.user}{instruction}{self.assistant}"


TEMPLATES: dict[str, Template] = {
    "vicuna_v1": Template("vicuna_v1", VICUNA_SYSTEM),
    "plain_chat": Template("plain_chat", ""),
    # Qwen2-VL-Instruct's chat template with one image before the text.
    "qwen2_vl": Template("qwen2_vl", "You are a helpful assistant.", pattern=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "{image}{instruction}<|im_end|>\n<|im_start|>assistant\n"),
        image_format="<|vision_start|>{token}<|vision_end|>", answer_prefix="",
        turn_pattern="\n<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"),
    # InstructBLIP (LAVIS): the bare instruction; the answer follows after a space.
    "instructblip": Template("instructblip", "", pattern="{instruction}", image_in_text=False,
                             turn_pattern=" {instruction}"),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise UserError(f"unknown conversation template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
