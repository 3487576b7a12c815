"""Every example shows on SmolLM2 what its header says it shows.

``tests/e2e/test_examples.py`` runs each example on tiny-random (it runs; it covers the
front doors); this file runs them on the default model, the way a new user does, and
checks the property each is meant to show: the capital is right, a choice is one of the
options, the preferred answer follows the instruction, the routed question gets an
answer. Programs run through the CLI in process with ``--json``; scripts in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmq.cli import main

pytestmark = pytest.mark.smollm2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_program(capsys, monkeypatch, *argv: str, where: Path = ROOT) -> object:
    """The parsed ``--json`` output of ``lmq run ARGV`` on SmolLM2."""
    monkeypatch.chdir(where)
    monkeypatch.delenv("LMQ_DECODER", raising=False)
    monkeypatch.delenv("LMQ_MODEL", raising=False)
    code = main(["run", *argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def run_script(name: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "LMQ_MODEL"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT,
                            env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_hello_answers_paris(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/hello.lmq")
    assert "Paris" in out["variables"]["ANSWER"]


def test_capital_names_the_city_and_a_population(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/capital.lmq", "--arg", "country=France")
    assert out["variables"]["CITY"].strip() == "Paris"
    assert 1 <= out["variables"]["N"] <= 15


def test_choices_are_options_and_free_values_are_words(capsys, monkeypatch):
    got = run_program(capsys, monkeypatch, "examples/choices.lmq")["variables"]
    assert got["COLOUR"] in (" red", " green", " blue")
    assert got["OTHER"].strip() in ("orange", "yellow", "blue", "indigo", "violet")
    assert got["YES"] in (" yes", " sure")
    sentence = got["SENTENCE"]
    assert sentence.startswith(" The") and sentence.endswith(".") and " cat" in sentence
    assert "\n" not in sentence
    assert got["PET"] in (" cat", " dog")
    assert got["NOT_NO"] in (" yes", " maybe")


@pytest.mark.parametrize("mode", ["contrastive", "prompt", "cascade"])
def test_prefer_follows_the_instruction_in_every_mode(capsys, monkeypatch, mode):
    out = run_program(capsys, monkeypatch, "examples/prefer.lmq", "--arg", f"mode={mode}")
    assert out["variables"]["A"].strip(" .") == "Rome"


def test_prefer_example_needs_the_clause(capsys, monkeypatch, tmp_path):
    # the header's claim: without the prefer clause the same prompt answers Paris
    source = (EXAMPLES / "prefer.lmq").read_text()
    plain = tmp_path / "plain.lmq"
    plain.write_text(source[:source.index("\nprefer")] + "\n")
    out = run_program(capsys, monkeypatch, str(plain))
    assert out["variables"]["A"].strip(" .") == "Paris"


def test_batch_answers_each_capital(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["run", "examples/batch.lmq", "--inputs", "examples/batch_inputs.jsonl",
                 "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    answers = {line["line"]: line["result"]["variables"]["ANSWER"] for line in lines}
    expected = {1: "Paris", 2: "Lima", 4: "Tokyo", 5: "Nairobi"}
    assert set(answers) == set(expected)
    for number, city in expected.items():
        assert city in answers[number], answers[number]


def test_numbers_are_right_and_dates_plausible(capsys, monkeypatch):
    got = run_program(capsys, monkeypatch, "examples/numbers.lmq")["variables"]
    assert got["SKY"] is True
    assert got["LEGS"] == 8
    assert str(got["PI"]).startswith("3.14")
    assert got["T"] == 100
    year = int(got["DATE"][:4])
    assert 1900 <= year <= 2100
    assert re.fullmatch(r"[A-Z]{2}[0-9]{1,2} [0-9][A-Z]{2}", got["POSTCODE"])


def test_extract_finds_the_person(capsys, monkeypatch):
    doc = "Ada Lovelace wrote the first program in 1843, for the Analytical Engine."
    out = run_program(capsys, monkeypatch, "examples/extract.lmq", "--arg", f"doc={doc}")
    got = out["variables"]
    assert got["WHO"] == "Ada Lovelace"
    assert got["RECORD"]["name"] == "Ada Lovelace"
    assert 1000 <= got["RECORD"]["year"] <= 2100  # the header says the year is a guess
    assert "history" in got["TOPICS"] or "computing" in got["TOPICS"]


def test_sentiment_of_a_delightful_film(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/sentiment.lmq", "--arg",
                      "review=A delightful little film.")
    dist = out["distribution"]["LABEL"]
    assert max(dist, key=dist.get) == " positive"


def test_nested_capitals_and_the_european_branch(capsys, monkeypatch):
    got = run_program(capsys, monkeypatch, "examples/nested.lmq", "--tools",
                      "examples/tools.py:has_vowel")
    assert got["values"]["CITY"] == ["Paris", "Tokyo"]
    assert len(got["values"]["NOTE"]) == 1 and "Paris" in got["values"]["NOTE"][0]
    assert got["variables"]["WORD"].strip() in ("apple", "banana", "orange", "mango")


def test_beam_keeps_three_reasons_for_one_fruit(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/beam.lmq")
    assert len(out) == 3
    assert all(r["variables"]["FRUIT"] == " apple" for r in out)
    assert all(r["variables"]["WHY"].strip() for r in out)
    assert [r["score"] for r in out] == sorted((r["score"] for r in out), reverse=True)


def test_chat_samples_are_one_line_each(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/chat.lmq", "--arg", "topic=autumn")
    lines = [r["variables"]["LINE"] for r in out]
    assert len(lines) == 3
    assert all(line.strip() and "\n" not in line for line in lines)


def test_fusion_answers_the_symbol(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "examples/fusion.lmq", "--arg", "model=smollm2")
    assert out["variables"]["A"] == " Na"


def test_specialist_routes_the_egg_to_cooking(capsys, monkeypatch):
    out = run_program(capsys, monkeypatch, "ask.lmq", "--arg",
                      "question=How long should I boil an egg?", where=EXAMPLES / "specialists")
    assert out["variables"]["ANSWER"].strip()
    assert "(answered by the cooking specialist)" in out["prompt"]


def test_functions_year_is_a_plausible_four_digit_year():
    out = run_script("functions.py")
    year = re.search(r"^year: (\d+) int$", out, re.MULTILINE)
    assert year and 1950 <= int(year.group(1)) <= 1975, out
    assert "Paris" in out


def test_api_tour_batch_answers_and_samples_are_words():
    out = run_script("api_tour.py")
    for city in ("Paris", "Lima", "Tokyo", "Nairobi", "Rome", "Madrid"):
        assert city in out, out
    samples = re.findall(r"^ +-?\d+\.\d+ '(.*)'$", out, re.MULTILINE)
    assert len(samples) == 3 and all(re.fullmatch(r"[A-Z]?[a-z]+", s) for s in samples)


def test_stdlib_knowledge_follows_the_instruction_and_reads_notes():
    out = run_script("stdlib_knowledge.py")
    assert "cascade: 'Rome' from instruction" in out
    assert "prefer clause: ' Rome'" in out
    assert "Who is the CEO of Acme? -> 'Jane Roe' (notes" in out
    assert "capital of Japan? -> 'Tokyo' (parametric" in out


def test_stdlib_routing_routes_both_ways_and_answers():
    out = run_script("stdlib_routing.py")
    pancake = out[out.index("pancake"):]
    assert re.search(r"embedding -> cooking", pancake) and re.search(r"lm +-> cooking",
                                                                     pancake)
    answered = re.search(r"routed to geography, answered '(.+)'", out)
    assert answered and "Ottawa" in answered.group(1), out


def test_stdlib_labels_stay_in_the_label_set():
    out = run_script("stdlib_labels.py")
    assert re.search(r"labels: \['(science|health)'\]  valid=True", out), out
    assert re.search(r"scores: \['(science|health)'\]  valid=True", out), out


def test_stdlib_posix_hpt_scores_and_solves_the_planet():
    out = run_script("stdlib_posix_hpt.py")
    assert re.search(r"POSIX over templates: \d+\.\d+", out)
    assert "solar system? -> 'Jupiter'" in out, out


def test_grammar_values_parse_and_the_expression_is_evaluated(capsys, monkeypatch):
    from lmq import grammars

    result = run_program(capsys, monkeypatch, "examples/grammar.lmq", "--tools",
                         "examples/tools.py:evaluate")
    expression = result["prompt"].split("parentheses: ", 1)[1].split("\n", 1)[0]
    assert grammars.is_sentence((EXAMPLES / "expr.lark").read_text(), expression)
    assert grammars.is_sentence((EXAMPLES / "sql.lark").read_text(),
                                result["variables"]["QUERY"])
    assert "It evaluates to " in result["prompt"]


def test_every_example_has_a_property_test():
    tested = (Path(__file__).read_text())
    for path in EXAMPLES.rglob("*"):
        if path.suffix in (".lmq", ".py") and path.name != "tools.py" and \
                "__pycache__" not in path.parts:
            assert path.name in tested or path.stem in tested, path.name
