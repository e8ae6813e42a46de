"""`#sim` parsing."""

from __future__ import annotations

import pytest

from relay_modelsim.directives import Directive, DirectiveError, find_directive, fingerprint


def test_no_directive() -> None:
    assert find_directive("just a question\n# sim is not it") is None


def test_last_directive_line_wins() -> None:
    text = 'intro\n#sim {"tokens": 1}\nmore\n  #sim {"tokens": 2, "tag": "x"}  \n'
    assert find_directive(text) == Directive(tokens=2, tag="x")


def test_full_directive() -> None:
    found = find_directive(
        '#sim {"tokens": 3, "token_delay_ms": 1, "ttft_ms": 2, "tools": [{"name": "calc"}],'
        ' "tool_rounds": -1, "fail": {"status": 429, "type": "rate_limit_error",'
        ' "after_tokens": 2}, "fail_times": 1, "tag": "t"}'
    )
    assert found is not None
    assert found.tools[0].args == {}
    assert found.fail is not None and found.fail.after_tokens == 2


@pytest.mark.parametrize(
    "line",
    [
        "#sim",
        "#sim {",
        "#sim [1]",
        '#sim {"tokns": 1}',
        '#sim {"tokens": -1}',
        '#sim {"tool_rounds": -2}',
    ],
)
def test_bad_directive_raises(line: str) -> None:
    with pytest.raises(DirectiveError):
        find_directive(line)


def test_fingerprint_depends_on_tag() -> None:
    a, b = Directive(tokens=1, tag="a"), Directive(tokens=1, tag="b")
    assert fingerprint(a) == fingerprint(Directive(tokens=1, tag="a"))
    assert fingerprint(a) != fingerprint(b)
