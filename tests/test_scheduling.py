"""The parallel step's work units (tests/fixtures/scheduling.py)."""

from __future__ import annotations

from tests.fixtures.scheduling import SHARED_STACK_PACKAGE, work_unit


def test_the_files_of_the_shared_stacks_go_to_one_process_together() -> None:
    assert work_unit("tests/e2e/shared/test_races.py::test_x[sqlite]") == SHARED_STACK_PACKAGE
    assert work_unit("tests/e2e/shared/test_account.py::test_y") == SHARED_STACK_PACKAGE


def test_any_other_file_is_a_unit_of_its_own() -> None:
    assert work_unit("tests/e2e/test_rate_limits.py::test_z") == "tests/e2e/test_rate_limits.py"
    assert work_unit("tests/auth/test_grpc.py::Test::test_w") == "tests/auth/test_grpc.py"
