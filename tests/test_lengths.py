"""Length limits and truncation policies: the target never loses its EOS, each side obeys its own policy."""

from __future__ import annotations

from dsc.compiler.encode import IGNORE, fit
from dsc.compiler.spec import Lengths

EOS = 99
SRC = [1, 2, 3, 4, 5, 6]
TGT = [11, 12, 13, 14, 15]


def run(**kw) -> tuple[list[int], list[int], bool, str | None]:
    r = fit(list(SRC), [IGNORE] * len(SRC), list(TGT), list(TGT), EOS, Lengths(**kw), protect=0)
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
