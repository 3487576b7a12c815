"""Results: fields, repr, JSON, segments and the HTML view."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import lmq

MODEL = "tiny-random"


class _Spans(HTMLParser):
    """Collects the text and title of each highlighted hole."""

    def __init__(self) -> None:
        super().__init__()
        self.holes: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "span" and attributes.get("class") == "lmq-hole":
            self._open = {"hole": attributes["data-hole"], "title": attributes["title"],
                          "text": ""}

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.holes.append(self._open)
            self._open = None


def test_segments_join_to_the_prompt_and_mark_holes():
    result = lmq.query('"a <b> & [N: int] then [W]" where len(TOKENS(W)) < 3',
                       model=MODEL)()
    assert "".join(text for text, _ in result.segments) == result.prompt
    holes = [(text, hole) for text, hole in result.segments if hole]
    assert [hole for _, hole in holes] == ["N", "W"]
    assert holes[0][0] == str(result.variables["N"])


def test_constraints_are_shown_as_written():
    result = lmq.query('argmax\n    "x[N: int] y[W]" where STOPS_AT(W, ".")\n'
                       'where\n    len(TOKENS(W)) < 4 and N != "5"\n', model=MODEL)()
    assert result.constraints["W"] == 'STOPS_AT(W, ".") and len(TOKENS(W)) < 4'
    assert result.constraints["N"] == 'int and N != "5"'


def test_repr_is_short_and_readable():
    result = lmq.query('"x[A]" where len(TOKENS(A)) == 40', model=MODEL)()
    text = repr(result)
    assert text.startswith("Result(A=") and "score=" in text
    assert len(text) < 120


def test_to_dict_round_trips_through_json():
    result = lmq.query('"x[N: int] y[A]" where len(TOKENS(A)) < 3\nreturn {"n": N}',
                       model=MODEL)()
    data = json.loads(result.to_json())
    assert data["variables"]["N"] == result.variables["N"]
    assert data["return_value"] == {"n": result.variables["N"]}
    assert data["segments"] == [list(s) for s in result.segments]
    assert set(data) >= {"variables", "values", "prompt", "return_value", "distribution",
                         "logprobs", "score", "trace", "stats"}
    assert "trace" not in result.to_dict(trace=False)
    call = data["trace"][0]
    assert set(call) >= {"model", "rows", "tokens_in", "tokens_out", "mask_ms"}


def test_html_highlights_each_hole_with_its_details():
    result = lmq.query('"<tag> & [A] and [B: int]" where len(TOKENS(A)) == 2',
                       model=MODEL)()
    page = result._repr_html_()
    assert "&lt;tag&gt; &amp;" in page  # prompt text is escaped
    parser = _Spans()
    parser.feed(page)
    assert [h["hole"] for h in parser.holes] == ["A", "B"]
    first = parser.holes[0]
    assert first["text"] == result.variables["A"]
    assert "len(TOKENS(A)) == 2" in first["title"]
    assert "tokens: 2" in first["title"]
    assert f"log-probability: {sum(result.logprobs['A']):.3f}" in first["title"]
    assert 'class="lmq-legend"' in page


def test_html_shows_distributions_as_bars():
    result = lmq.query('argmax\n    "Mood:[M]"\ndistribution\n    M in [" good", " bad"]\n',
                       model=MODEL)()
    page = result._repr_html_()
    assert page.count('class="lmq-bar"') == 2
    assert "distribution of M" in page


def test_batch_results_render_with_errors():
    q = lmq.query('"{x}[A]" where len(TOKENS(A)) < 2', model=MODEL)
    answers = q.batch([{"x": "a"}, {}])
    page = answers._repr_html_()
    assert "result 1" in page and "missing parameter" in page


def test_json_is_strict_for_non_finite_floats():
    result = lmq.Result({"T": float("inf")}, {"T": [float("inf")]}, "x",
                        score=float("-inf"))
    data = json.loads(result.to_json())
    assert data["variables"]["T"] == "inf" and data["score"] == "-inf"
