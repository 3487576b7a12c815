"""``%%lmq`` in IPython's InteractiveShell, and the example notebook run by nbclient on a
kernel that is this interpreter (``sys.executable``), whatever kernels the machine has."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import lmq

IPython = pytest.importorskip("IPython")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CELL = '"Q: capital of {country}?\\nA:[ANSWER]" where len(TOKENS(ANSWER)) == 3\n'


@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmq")
    return shell


def run(shell, line, cell):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        shell.run_cell_magic("lmq", line, cell)
    return captured


def html_of(captured) -> str:
    return "".join(output.data.get("text/html", "") for output in captured.outputs)


def test_cell_binds_holes_and_displays_html(shell):
    shell.user_ns["country"] = "France"
    captured = run(shell, "--model tiny-random", CELL)
    answer = shell.user_ns["ANSWER"]
    assert isinstance(answer, str) and answer
    page = html_of(captured)
    assert 'class="lmq-hole"' in page and 'data-hole="ANSWER"' in page
    assert captured.stderr == ""


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed")
def test_a_cell_on_the_llama_backend(shell):
    shell.user_ns["country"] = "Chile"
    captured = run(shell, "--model llama:tiny-random --as res", CELL)
    result = shell.user_ns["res"]
    assert len(result.logprobs["ANSWER"]) == 3 and 'data-hole="ANSWER"' in html_of(captured)


def test_as_binds_the_result_and_decoder_option(shell):
    shell.user_ns["country"] = "Peru"
    shell.user_ns.pop("WORDS", None)
    run(shell, '--model tiny-random --as res --decoder "sample(n=2, seed=3)"',
        '"Words about {country}:[WORDS]" where len(TOKENS(WORDS)) < 4')
    results = shell.user_ns["res"]
    assert isinstance(results, list) and len(results) == 2
    assert all(isinstance(r, lmq.Result) for r in results)
    assert "WORDS" not in shell.user_ns


def test_define_makes_a_query_function(shell):
    captured = run(shell, "--model tiny-random --define capital",
                   '"Capital of {country}:[C]" where len(TOKENS(C)) == 2')
    capital = shell.user_ns["capital"]
    assert isinstance(capital, lmq.Query) and capital.params == ("country",)
    assert "capital" in html_of(captured)
    result = capital(country="Chile")
    assert result.prompt.startswith("Capital of Chile:")
    assert len(result.logprobs["C"]) == 2


def test_tools_come_from_the_namespace(shell):
    shell.user_ns["shout"] = lambda text: text.upper()
    shell.user_ns["word"] = "hey"
    run(shell, "--model tiny-random --as r", '"{shout(word)}:[A]" where len(TOKENS(A)) == 1')
    assert shell.user_ns["r"].prompt.startswith("HEY:")


def test_verbose_shows_counts_and_calls(shell):
    shell.user_ns["country"] = "Chad"
    page = html_of(run(shell, "--model tiny-random -v", CELL))
    assert "forward_passes" in page and "tokens in" in page
    times = re.findall(r"<td style='padding: 0 6px'>(\d+\.\d+)</td>", page)
    assert times and all(len(t.split(".")[1]) == 2 for t in times)  # rounded for people


def test_errors_show_the_caret_not_a_traceback(shell):
    captured = run(shell, "--model tiny-random",
                   '"Answer:[ANSWER]" where len(TOKENS(ANSWR)) < 10')
    assert "unknown hole 'ANSWR'" in captured.stderr and "^^^^^" in captured.stderr
    assert "Traceback" not in captured.stderr + captured.stdout
    missing = run(shell, "--model tiny-random", '"{nowhere_defined}[A]"')
    assert "nowhere_defined" in missing.stderr
    bad_option = run(shell, "--modle x", CELL)
    assert "%%lmq" in bad_option.stderr and "Traceback" not in bad_option.stderr


def test_example_notebook_runs_with_nbclient(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec that runs this very interpreter, found through JUPYTER_PATH only.
    spec = tmp_path / "jupyter" / "kernels" / "lmq-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lmq test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("LMQ_MODEL", "tiny-random")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name="lmq-test", timeout=300,
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pages = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert pages.count('class="lmq-result"') >= 3 and 'class="lmq-bar"' in pages
    errors = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "unknown hole 'ANSWR'" in errors and "Traceback" not in errors
