"""Configuration files, ``LMQ_*`` variables and their precedence."""

from __future__ import annotations

import pytest

import lmq
from lmq import config
from lmq.checks import compile_source
from lmq.runtime.run import default_model


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A clean project folder as the current directory, with no LMQ_* variables."""
    for name in ("LMQ_MODEL", "LMQ_DECODER", "LMQ_CONFIG", "LMQ_BATCH_SIZE", "LMQ_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_no_file_means_defaults(project):
    assert config.load_config() == config.Config()
    assert config.default_model_name() == "smollm2"
    assert config.default_batch_size() == 16


def test_pyproject_table_in_a_parent_folder(project, monkeypatch):
    (project / "pyproject.toml").write_text('[tool.lmq]\nmodel = "fast"\nbatch_size = 4\n'
                                            '[tool.lmq.models]\nfast = "tiny-random"\n')
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    loaded = config.load_config()
    assert loaded.path == project / "pyproject.toml"
    assert loaded.model == "fast" and loaded.batch_size == 4
    assert config.resolve_model("fast") == "tiny-random"


def test_pyproject_without_table_is_skipped_and_lmq_toml_wins(project, monkeypatch):
    (project / "lmq.toml").write_text('model = "from-lmq-toml"\n')
    (project / "pyproject.toml").write_text('[tool.lmq]\nmodel = "from-pyproject"\n')
    sub = project / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(sub)
    assert config.load_config().model == "from-lmq-toml"


def test_precedence_caller_program_env_file_default(project, monkeypatch):
    (project / "lmq.toml").write_text('model = "file-model"\n')
    plain = compile_source('"x[A]"')
    with_from = compile_source('argmax "x[A]" from "program-model"')
    assert default_model(plain) == "file-model"
    monkeypatch.setenv("LMQ_MODEL", "env-model")
    assert default_model(plain) == "env-model"
    assert default_model(with_from) == "program-model"
    assert default_model(with_from, "caller-model") == "caller-model"


def test_alias_is_resolved_before_loading(project):
    (project / "lmq.toml").write_text('[models]\nquick = "tiny-random"\nq2 = "quick"\n')
    result = lmq.query('"x[A]" where len(TOKENS(A)) == 2', model="q2")()
    assert len(result.logprobs["A"]) == 2
    assert result.trace[0]["model"] == "tiny-random"
    inline = lmq.query('"x[A]" from "quick" where len(TOKENS(A)) == 1', model="tiny-random")()
    assert len(inline.logprobs["A"]) == 1


def test_relative_paths_are_anchored_to_the_file(project):
    (project / "lmq.toml").write_text('[models]\nlocal = "hf:models/m"\nabs = "hf:/x"\n')
    loaded = config.load_config()
    assert loaded.models["local"] == f"hf:{project / 'models' / 'm'}"
    assert loaded.models["abs"] == "hf:/x"


def test_decoder_from_configuration_and_environment(project, monkeypatch):
    (project / "lmq.toml").write_text('decoder = "sample(n=2, seed=0)"\n')
    q = lmq.query('"x[A]" where len(TOKENS(A)) < 2', model="tiny-random")
    assert len(q()) == 2
    monkeypatch.setenv("LMQ_DECODER", "sample(n=3, seed=0)")
    assert len(q()) == 3
    # a decoder clause in the program or from the caller wins
    assert isinstance(lmq.query('argmax "x[A]" where len(TOKENS(A)) < 2',
                                model="tiny-random")(), lmq.Result)
    assert isinstance(lmq.query('"x[A]" where len(TOKENS(A)) < 2', model="tiny-random",
                                decoder="argmax")(), lmq.Result)


def test_bad_files_are_reported(project, monkeypatch):
    (project / "lmq.toml").write_text('modle = "x"\n')
    with pytest.raises(config.LmqConfigError, match="did you mean 'model'"):
        config.load_config()
    (project / "lmq.toml").write_text('[models]\na = "b"\nb = "a"\n')
    with pytest.raises(config.LmqConfigError, match="cycle: a -> b -> a"):
        config.resolve_model("a")
    (project / "lmq.toml").write_text('batch_size = 0\n')
    with pytest.raises(config.LmqConfigError, match="positive integer"):
        config.load_config()
    monkeypatch.setenv("LMQ_CONFIG", str(project / "nowhere.toml"))
    with pytest.raises(config.LmqConfigError, match="names no file"):
        config.load_config()


def test_explicit_config_file(project, monkeypatch, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere") / "settings.toml"
    other.write_text('[tool.lmq]\nmodel = "explicit"\n')
    monkeypatch.setenv("LMQ_CONFIG", str(other))
    assert config.default_model_name() == "explicit"
