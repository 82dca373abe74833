"""Hypothesis settings of the fuzz targets: a short run in `make test`, a long one in `make fuzz`.

Every target asserts "no crash": a decoder or parser may only refuse its input with one of the project's documented
error classes (vfl.errors.VflError and its subclasses, psi.errors.PsiError's), never with anything else, and never
hang: each example has a deadline (a hang fails as DeadlineExceeded) besides pytest-timeout's limit on the whole.

    make test                      # profile "ci": a few hundred examples per target, seconds each
    make fuzz                      # profile "long" (VFL_FUZZ_PROFILE=long): a hundred times as many
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# deadlines are generous for a shared 2-core machine: they catch hangs and runaway work, not slow examples
settings.register_profile("ci", max_examples=300, deadline=5_000, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.register_profile("long", max_examples=30_000, deadline=5_000, suppress_health_check=_SLOW_OK,
                          print_blob=True)

PROFILE = os.environ.get("VFL_FUZZ_PROFILE", "ci")
FUZZ = settings.get_profile(PROFILE)
