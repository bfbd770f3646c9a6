"""Stanford Alpaca's self-instruct list format: seed tasks out as a numbered "###" list, candidate tasks back.

A request is the rendered prompt template, a newline, then each example as

    ###
    N. Instruction: <instruction, whitespace collapsed, trailing colons dropped>
    N. Input:
    <input, or <noinput> when empty>
    N. Output:
    <output>

and a closing "###" with the next number's "Instruction:", which the model continues. The completion is read back
the way Alpaca's `post_process_gpt3_response` does: the header is put back in front, the text is split on "###", the
last piece is dropped when the model stopped for length, and each piece must split on its own number's three headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOINPUT = "<noinput>"
SEPARATOR = "###"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Task:
    """One instruction-following example: a seed, or a candidate the model wrote."""

    instruction: str
    input: str
    output: str


@dataclass
class Parsed:
    """The candidates of one completion, in order, and how many pieces could not be read."""

    tasks: list[Task]
    malformed: int = 0
    truncated: int = 0


def encode_examples(examples: list[Task]) -> str:
    """The numbered list of examples, ending with the next number's open "Instruction:"."""
    out = []
    for number, task in enumerate(examples, start=1):
        instruction = _SPACE.sub(" ", task.instruction).strip().rstrip(":")
        given = NOINPUT if task.input.lower() == "" else task.input
        out.append(f"{SEPARATOR}\n")
        out.append(f"{number}. Instruction: {instruction}\n")
        out.append(f"{number}. Input:\n{given}\n")
        out.append(f"{number}. Output:\n{task.output}\n")
    out.append(f"{SEPARATOR}\n{len(examples) + 1}. Instruction:")
    return "".join(out)


def encode_prompt(preamble: str, examples: list[Task]) -> str:
    """The whole request: the rendered template, a newline (as Alpaca adds to prompt.txt), then the list."""
    return preamble + "\n" + encode_examples(examples)


def parse_completion(text: str, finish_reason: str | None, num_examples: int, echoed_header: bool = False) -> Parsed:
    """Cut a completion back into tasks. `echoed_header`: a chat model may repeat the open "N. Instruction:" the
    prompt ended with; it is then not put back a second time."""
    first = num_examples + 1
    header = f"{first}. Instruction:"
    if echoed_header and text.lstrip().startswith(header):
        text = text.lstrip()[len(header) :]
    pieces = (header + text).split(SEPARATOR)
    parsed = Parsed(tasks=[])
    for offset, piece in enumerate(pieces):
        if offset == len(pieces) - 1 and finish_reason == "length":
            parsed.truncated += 1
            continue
        if not piece.strip():
            continue  # what a trailing "###" leaves: nothing was lost
        number = first + offset
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", piece)
        if len(parts) != 7:
            parsed.malformed += 1
            continue
        given = parts[4].strip()
        parsed.tasks.append(Task(parts[2].strip(), "" if given.lower() == NOINPUT else given, parts[6].strip()))
    return parsed
