"""Which keyword a model's `forward` takes its KV cache by (unit test on stand-in classes).

transformers 5.24 renamed `past_key_values` to `cache` and warns on the old name; the install
allows releases on both sides of that rename, so the backend asks the model's signature.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent_server.backends.transformers import _cache_argument


class Renamed:
    def forward(self, input_ids: Any = None, cache: Any = None, **kwargs: Any) -> None: ...


class Older:
    def forward(
        self, input_ids: Any = None, past_key_values: Any = None, **kwargs: Any
    ) -> None: ...


@pytest.mark.parametrize(
    ("model", "expected"), [(Renamed(), "cache"), (Older(), "past_key_values")]
)
def test_the_cache_goes_by_the_name_forward_declares(model: Any, expected: str) -> None:
    assert _cache_argument(model) == expected
