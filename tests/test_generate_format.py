"""`dsc generate`'s Alpaca list format, filters and spec: byte for byte against references written from Stanford
Alpaca's published generate_instruction.py behaviour, on the real seed tasks and prompt.txt."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest
from conftest import DATA, FORMATS, REPO, run_dsc
from dsc.compiler.errors import RecordError, SpecError
from dsc.compiler.generate.encoding import Task, encode_prompt, parse_completion
from dsc.compiler.generate.filters import ALPACA_BLACKLIST, Filters
from dsc.compiler.generate.run import examples_for, prompt_for
from dsc.compiler.generate.spec import DEFAULT_STALL_REQUESTS, DEFAULT_STALL_SECONDS, Stall, load_generate_spec, read_seeds

SHARED_PROMPT = Path("/work/shared/data/alpaca_self_instruct_prompt.txt")
SEEDS = DATA / "alpaca_seed_tasks.jsonl"


def reference_encode(prompt_txt: str, tasks: list[dict[str, str]]) -> str:
    """Alpaca's encode_prompt as its description reads: prompt.txt and a newline, then per task "###", the numbered
    instruction (whitespace runs to one space, stripped, trailing colons off), input (<noinput> when empty) and
    output, then "###" and the next number's "Instruction:"."""
    prompt = prompt_txt + "\n"
    for idx, task in enumerate(tasks):
        instruction = re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":")
        given = "<noinput>" if task["input"].lower() == "" else task["input"]
        prompt += "###\n"
        prompt += f"{idx + 1}. Instruction: {instruction}\n"
        prompt += f"{idx + 1}. Input:\n{given}\n"
        prompt += f"{idx + 1}. Output:\n{task['output']}\n"
    prompt += "###\n"
    prompt += f"{len(tasks) + 1}. Instruction:"
    return prompt


def reference_parse(num_prompt: int, text: str, finish_reason: str) -> list[dict[str, str]]:
    """Alpaca's post-processing as described, filters included, with its blacklist and rules."""
    raw = re.split("###", f"{num_prompt + 1}. Instruction:" + text)
    out = []
    for idx, inst in enumerate(raw):
        if idx == len(raw) - 1 and finish_reason == "length":
            continue
        idx += num_prompt + 1
        parts = re.split(rf"{idx}\.\s+(Instruction|Input|Output):", inst)
        if len(parts) != 7:
            continue
        inst, given, output = parts[2].strip(), parts[4].strip(), parts[6].strip()
        given = "" if given.lower() == "<noinput>" else given
        if len(inst.split()) <= 3 or len(inst.split()) > 150:
            continue
        if any(re.compile(rf"\b({w})\b", flags=re.IGNORECASE).search(inst) for w in ALPACA_BLACKLIST):
            continue
        if inst.startswith("Write a program") or inst[0] in string.punctuation or not inst[0].isascii():
            continue
        out.append({"instruction": inst, "input": given, "output": output})
    return out


def test_prompt_template_is_alpacas_prompt_txt_byte_for_byte():
    assert (REPO / "templates" / "alpaca_self_instruct_prompt.txt").read_bytes() == SHARED_PROMPT.read_bytes()


def test_encoding_matches_alpaca_byte_for_byte_on_every_seed():
    seeds = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    tasks = [{"instruction": s["instruction"], "input": s["instances"][0]["input"], "output": s["instances"][0]["output"]} for s in seeds]
    prompt_txt = SHARED_PROMPT.read_text(encoding="utf-8")
    for i in range(0, len(tasks) - 2, 3):
        group = tasks[i : i + 3]
        assert encode_prompt(prompt_txt, [Task(**t) for t in group]) == reference_encode(prompt_txt, group)
    odd = {"instruction": "  Summarize\tthe   text:\n below:: ", "input": "", "output": "x"}
    assert encode_prompt(prompt_txt, [Task(**odd)]) == reference_encode(prompt_txt, [odd])
    assert "1. Instruction: Summarize the text: below\n1. Input:\n<noinput>\n" in reference_encode("", [odd])


def test_request_prompts_are_the_built_in_spec_encoding_and_fixed_per_request():
    spec = load_generate_spec("alpaca")
    assert spec.seed_tasks == tuple(read_seeds(SEEDS)) and len(spec.seed_tasks) == 175
    examples = examples_for(spec, 7)
    assert examples == examples_for(spec, 7) and examples != examples_for(spec, 8)
    expected = reference_encode(SHARED_PROMPT.read_text(encoding="utf-8"), [vars(t) for t in examples])
    assert prompt_for(spec, 7) == expected
    assert expected.endswith("###\n4. Instruction:")


COMPLETION = (
    " Name three primary colors used in painting.\n4. Input:\n<noinput>\n4. Output:\nRed, yellow and blue.\n###\n"
    "5. Instruction: Translate the sentence into French.\n5. Input:\nThe cat sleeps on the sofa.\n"
    "5. Output:\nLe chat dort sur le canapé.\n###\n"
    "6. Instruction: Rewrite this sentence so it sounds polite\n6. Output:\nmissing its input header\n###\n"  # malformed: 5 pieces
    "8. Instruction: Give the wrong number to this block please.\n8. Input:\n<noinput>\n8. Output:\nnumbering skipped\n###\n"
    "8. Instruction: Draw a diagram of the water cycle for kids.\n8. Input:\n<noinput>\n8. Output:\nclouds\n###\n"
    "9. Instruction: Write a program that prints the first ten primes.\n9. Input:\n<noinput>\n9. Output:\n2 3 5\n###\n"
    '10. Instruction: "Quoted" openings are dropped by the punctuation rule.\n10. Input:\n<noinput>\n10. Output:\nok\n###\n'
    "11. Instruction: Écrivez une phrase sur la mer et le vent.\n11. Input:\n<noinput>\n11. Output:\nLa mer.\n###\n"
    "12. Instruction: Too short here\n12. Input:\n<noinput>\n12. Output:\nno\n###\n"
    "13. Instruction: Explain why the sky looks blue during the day.\n13. Input:\n<NoInput>\n13. Output:\nRayleigh scattering.\n###\n"
    "14. Instruction: Describe the taste of a lemon to someone who"
)


@pytest.mark.parametrize("finish", ["stop", "length"])
def test_parse_and_filters_agree_with_alpaca(finish: str):
    parsed = parse_completion(COMPLETION, finish, 3)
    filters = Filters()
    ours = [vars(t) for t in parsed.tasks if filters.reject(t.instruction) is None]
    assert ours == reference_parse(3, COMPLETION, finish)
    assert [t["instruction"] for t in ours][:2] == ["Name three primary colors used in painting.", "Translate the sentence into French."]
    assert ours[-1]["input"] == "" and ours[-1]["output"] == "Rayleigh scattering."
    # 6 has no Input header, the second "8." sits at position 8 but the first "8." at position 7, 14 never ends
    assert parsed.malformed == (2 if finish == "length" else 3)
    assert parsed.truncated == (1 if finish == "length" else 0)


def test_each_filter_names_its_reason_and_can_be_turned_off():
    f = Filters()
    assert f.reject("Name three primary colors.") is None
    assert f.reject("Too short here") == "too short"
    assert f.reject(" ".join(["word"] * 151)) == "too long" and f.reject(" ".join(["word"] * 150)) is None
    assert f.reject("Plot the sales of last year by month.") == "blacklisted word"
    assert f.reject("Please GO TO the shop and buy milk.") == "blacklisted word"
    assert f.reject("Describe the mapping between keys and values.") is None  # whole words only
    assert f.reject("Write a program to sort a list.") == "banned opening"
    assert f.reject("write a program to sort a list.") is None  # Alpaca's check is case-sensitive
    assert f.reject("(Optional) describe your morning routine today.") == "leading punctuation"
    assert f.reject("¿Qué hora es ahora mismo aquí?") == "non-ASCII start"
    off = Filters(min_words=None, max_words=None, blacklist=(), prefixes=(), leading_punctuation=False, ascii_start=False)
    for text in ("Short", "Plot the sales of last year by month.", "Write a program to sort.", "(x) a b c", "请写一首关于春天的诗。"):
        assert off.reject(text) is None
    assert Filters(blacklist=("sql",)).reject("Write an SQL query for the table.") == "blacklisted word"


def test_chat_models_that_repeat_the_open_header_are_read():
    text = "4. Instruction: Name a fruit that is yellow and long.\n4. Input:\n<noinput>\n4. Output:\nA banana."
    assert parse_completion(text, "stop", 3, echoed_header=True).tasks == [Task("Name a fruit that is yellow and long.", "", "A banana.")]
    assert parse_completion(text, "stop", 3).malformed == 1  # the completions endpoint keeps Alpaca's strict reading


def _spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gen.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_spec_errors_name_file_line_and_key(tmp_path: Path):
    head = f"name: t\ngenerate:\n  seeds: {SEEDS}\n  model: m\n"
    cases = {
        head + "  temprature: 1.0\n": (5, "generate.temprature: unknown key 'temprature' (did you mean 'temperature'?)"),
        head + "  api: grpc\n": (5, "generate.api: 'grpc' is not one of ['completions', 'chat']"),
        head + "  novelty:\n    similarity: rouge-l\n    ngram: 2\n": (7, "generate.novelty.ngram: is a MinHash setting"),
        head + "  examples_per_request: 500\n": (5, "generate.examples_per_request: 500 examples per request, but"),
        head + "  prompt: 'List {{ count }} tasks'\n": (5, "undefined variable 'count'"),
        "name: t\ngenerate:\n  seeds: nowhere.jsonl\n  model: m\n": (3, "generate.seeds: no seed file 'nowhere.jsonl'"),
        head + "  stop: [a, b, c, d, e]\n": (5, "generate.stop:"),
        head + "  stall:\n    requests: 0\n": (6, "generate.stall.requests:"),
        head + "  stall: {minutes: 3}\n": (5, "generate.stall.minutes: unknown key 'minutes'"),
    }
    for body, (line, message) in cases.items():
        with pytest.raises(SpecError) as info:
            load_generate_spec(_spec(tmp_path, body))
        text = info.value.render()
        assert f"gen.yaml:{line}:" in text and message in text, text


def test_stall_limits_default_and_turn_off(tmp_path: Path):
    head = f"name: t\ngenerate:\n  seeds: {SEEDS}\n  model: m\n"
    assert load_generate_spec(_spec(tmp_path, head)).stall == Stall(requests=DEFAULT_STALL_REQUESTS, seconds=DEFAULT_STALL_SECONDS)
    assert load_generate_spec(_spec(tmp_path, head + "  stall: false\n")).stall == Stall(requests=None, seconds=None)
    one_off = load_generate_spec(_spec(tmp_path, head + "  stall: {seconds: false, requests: 40}\n")).stall
    assert one_off == Stall(requests=40, seconds=None)


def test_bad_seed_records_are_located(tmp_path: Path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "c", "instances": []}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"seeds.jsonl:2: instances: needs at least one"):
        read_seeds(seeds)
    seeds.write_text('{"instruction": "a", "input": "", "output": 3}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"seeds.jsonl:1: output: must be a string, is a int"):
        read_seeds(seeds)
    assert read_seeds(DATA / "alpaca_en_demo.json")[0].instruction  # a JSON array of flat tasks works too


def test_cli_spec_error_exits_2_and_formats_lists_no_generate_spec(tmp_path: Path):
    result = run_dsc("generate", str(_spec(tmp_path, f"name: t\ngenerate:\n  seeds: {SEEDS}\n")))
    assert result.returncode == 2
    assert "gen.yaml:2: generate: 'model' is a required property" in result.stderr
    listed = run_dsc("formats")
    assert listed.returncode == 0 and "alpaca-self-instruct" not in listed.stdout
    assert (FORMATS / "generate" / "alpaca.yaml").is_file()
