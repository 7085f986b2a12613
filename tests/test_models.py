"""Finding, assembling and verifying model files (no model is loaded here)."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from agent_server.errors import ModelNotAvailable
from agent_server.models import EMBEDDED, EmbeddedModel, embedded_gguf, resolve

# Real files inside an installed package stand in for model chunks: found the same way.
PARTS = (("prompts", "toolformer.j2"), ("prompts", "examples/none.txt"))


def _sha(*parts: tuple[str, str]) -> str:
    data = b"".join(resources.files(m).joinpath(p).read_bytes() for m, p in parts)
    return hashlib.sha256(data).hexdigest()


def _model(parts=PARTS, sha=None) -> EmbeddedModel:
    return EmbeddedModel("test-model", parts, sha or _sha(*parts), "chat", "pip install test")


def test_split_model_is_assembled_once_and_verified(tmp_path):
    model = _model()
    path = embedded_gguf(model, tmp_path)
    expected = b"".join(resources.files(m).joinpath(p).read_bytes() for m, p in PARTS)
    assert path.read_bytes() == expected
    assert path.parent == tmp_path / "gguf"
    mtime = path.stat().st_mtime_ns
    assert embedded_gguf(model, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # not assembled again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial files left


def test_split_model_with_wrong_sha_is_refused_and_not_kept(tmp_path):
    with pytest.raises(ModelNotAvailable, match="refusing model 'test-model'.*SHA-256"):
        embedded_gguf(_model(sha="0" * 64), tmp_path)
    assert list((tmp_path / "gguf").iterdir()) == []


def test_single_file_model_with_wrong_sha_is_refused(tmp_path):
    with pytest.raises(ModelNotAvailable, match="refusing model"):
        embedded_gguf(_model(parts=PARTS[:1], sha="f" * 64), tmp_path)


def test_missing_package_names_the_install_command(tmp_path):
    model = _model(parts=(("no_such_package_xyz", "a.bin"), *PARTS), sha=_sha(*PARTS))
    with pytest.raises(ModelNotAvailable, match="no_such_package_xyz: pip install test"):
        embedded_gguf(model, tmp_path)


def test_default_model_packages_are_installed_and_verified(tmp_path):
    source = resolve("qwen2.5-coder-0.5b", tmp_path)
    assert source.gguf_file == "qwen2.5-coder-0.5b-1d961463.gguf"
    assert source.prompt_style == "chat"
    small = resolve("smollm2-135m", tmp_path)
    assert small.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert small.prompt_style == "plain"
    assert set(EMBEDDED) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"}


def test_user_paths_and_hub_ids(tmp_path):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve(str(gguf), tmp_path)
    assert (source.location, source.gguf_file) == (str(tmp_path), "mine.gguf")
    assert source.cache_key and source.cache_key.startswith("mine-")
    assert resolve(str(tmp_path), tmp_path).gguf_file is None
    assert resolve("Qwen/Qwen2.5-0.5B", tmp_path).location == "Qwen/Qwen2.5-0.5B"
    with pytest.raises(ModelNotAvailable, match="no GGUF file"):
        resolve(str(tmp_path / "absent.gguf"), tmp_path)
    with pytest.raises(ModelNotAvailable, match="neither an embedded model"):
        resolve("no-such-model", tmp_path)
