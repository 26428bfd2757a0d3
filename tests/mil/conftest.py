"""Fixtures for the MIL op tests: each ``test_ops_*.py`` module lists its ``OP_CASES`` (see mil_models.OpCase)."""

from __future__ import annotations

import pytest

from .mil_models import save_op_package


@pytest.fixture(scope="session")
def op_runner(request, tmp_path_factory):
    """An interpreter over one package holding the ``OP_CASES`` of every collected test module, one function
    per case, converted with coremltools once for the whole run."""
    pytest.importorskip("coremltools")
    from elmexport.targets.coreml.mil import MILProgramRunner

    modules = {item.module for item in request.session.items if hasattr(item.module, "OP_CASES")}
    cases = [case for module in sorted(modules, key=lambda m: m.__name__) for case in module.OP_CASES]
    return MILProgramRunner(save_op_package(cases, tmp_path_factory.mktemp("ops") / "ops.mlpackage"))
