"""Length limits and truncation policies: the target never loses its EOS, each side obeys its own policy."""

from __future__ import annotations

import pytest
from dsc.compiler.encode import IGNORE, fit
from dsc.compiler.spec import Lengths

EOS = 99
SRC = [1, 2, 3, 4, 5, 6]
TGT = [11, 12, 13, 14, 15]


def run(**kw) -> tuple[list[int], list[int], bool, str | None]:
    """fit() on a 6-token prompt and a 5-token target; no floor on cut targets unless `min_target_tokens` is given."""
    r = fit(list(SRC), [IGNORE] * len(SRC), list(TGT), list(TGT), EOS, Lengths(**{"min_target_tokens": 1, **kw}), protect=0)
    return r.ids, r.labels, r.truncated, r.problem


def test_no_limits_appends_eos_and_trains_it() -> None:
    ids, labels, truncated, problem = run()
    assert ids == SRC + TGT + [EOS] and labels == [IGNORE] * 6 + TGT + [EOS]
    assert not truncated and problem is None


def test_target_truncation_keeps_eos() -> None:
    ids, labels, truncated, _ = run(max_target_length=3)
    assert ids == SRC + [11, 12, EOS] and labels[-3:] == [11, 12, EOS] and truncated


def test_source_truncation_right_and_left() -> None:
    assert run(max_source_length=4)[0] == [1, 2, 3, 4] + TGT + [EOS]
    assert run(max_source_length=4, prompt_truncation="left")[0] == [3, 4, 5, 6] + TGT + [EOS]


def test_max_length_cuts_the_target_first_then_the_prompt() -> None:
    ids, labels, truncated, _ = run(max_length=9)
    assert ids == SRC + [11, 12, EOS] and len(ids) == 9 and truncated
    ids, _, _, _ = run(max_length=5)  # the target keeps one token and its EOS; the prompt gives up the rest
    assert ids == [1, 2, 3, 11, EOS]


def test_drop_and_error_policies_report_the_limit() -> None:
    assert run(max_source_length=4, source_overflow="drop")[3] == "source"
    assert run(max_target_length=3, target_overflow="error")[3] == "target"
    assert run(max_length=8, target_overflow="drop")[3] == "total"
    assert run(max_length=20, target_overflow="drop")[3] is None


def test_special_prefix_is_never_cut() -> None:
    bos = 7
    r = fit([bos, *SRC], [IGNORE] * 7, list(TGT), list(TGT), EOS, Lengths(max_source_length=4, prompt_truncation="left"), protect=1)
    assert r.ids[:4] == [bos, 4, 5, 6]


def test_a_target_cut_below_the_floor_is_short() -> None:
    # max_length 9 leaves 2 of the 5 target tokens: under a floor of 3 the record goes, at 2 it stays
    assert run(max_length=9, min_target_tokens=3)[3] == "short"
    assert run(max_length=9, min_target_tokens=2)[0] == SRC + [11, 12, EOS]
    # the floor is about cut targets: an uncut target shorter than the floor stays, even when the prompt is cut
    assert run(max_source_length=4, min_target_tokens=8)[0] == [1, 2, 3, 4] + TGT + [EOS]
    assert run(min_target_tokens=8)[3] is None
    r = fit(list(SRC), [IGNORE] * 6, list(TGT), list(TGT), EOS, Lengths(max_length=8, min_target_tokens=3), protect=0)
    assert (r.problem, r.prompt_tokens, r.response_tokens) == ("short", 6, 2)  # what the cut would have kept, EOS counted


def test_default_floor_fits_under_max_target_length(tmp_path) -> None:
    from dsc.compiler.errors import SpecError
    from dsc.compiler.spec import MIN_TARGET_TOKENS, load_spec

    def lengths(text: str) -> Lengths:
        spec = tmp_path / "s.yaml"
        (tmp_path / "d.jsonl").write_text('{"q": "a", "a": "b"}\n', encoding="utf-8")
        spec.write_text(f"name: s\nsources: [{{path: d.jsonl}}]\nfields: {{q: {{type: string}}, a: {{type: string}}}}\n"
                        f"templates: {{prompt: '{{{{ q }}}}', response: '{{{{ a }}}}'}}\nlengths: {text}\n", encoding="utf-8")
        return load_spec(spec).lengths

    assert lengths("{max_length: 512}").min_target_tokens == MIN_TARGET_TOKENS
    assert lengths("{max_target_length: 8}").min_target_tokens == 7  # the default shrinks to what the limit leaves
    assert lengths("{max_target_length: 8, min_target_tokens: 4}").min_target_tokens == 4
    with pytest.raises(SpecError) as caught:
        lengths("{max_target_length: 8, min_target_tokens: 9}")
    assert "s.yaml:5" in caught.value.render() and "lengths.min_target_tokens" in caught.value.render()
