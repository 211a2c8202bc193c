"""pytest's warning filters: a deprecation attributed to our own modules fails the run."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["recsys.pipeline.train", "recsys_seed.generate"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_in_our_code_is_an_error(module, category):
    with pytest.raises(category):
        warnings.warn_explicit("deprecated", category, "ours.py", 1, module=module)
