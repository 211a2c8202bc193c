"""The run's closing line about environment-dependent tests (tests/support/environment.py)."""

from __future__ import annotations


def test_the_run_ends_with_what_ran_and_what_was_skipped_and_why(pytester):
    pytester.makepyfile("""
        import pytest
        from tests.support.environment import needs

        @needs("docker", False, "no Docker engine here")
        def test_compose():
            pass

        @needs("root", True, "runs only as root")
        @pytest.mark.parametrize("n", [1, 2])
        def test_service_account(n):
            pass

        @pytest.mark.environment("lambda-python3.13")
        def test_runtime():
            pytest.skip("no Python 3.13 here")

        def test_anything():
            pass
    """)
    result = pytester.runpytest("-p", "tests.support.environment")
    result.assert_outcomes(passed=3, skipped=2)
    result.stdout.fnmatch_lines(
        [
            (
                "environment-dependent tests: docker 0 ran, 1 skipped (no Docker engine here); "
                "lambda-python3.13 0 ran, 1 skipped (no Python 3.13 here); root 2 ran"
            ),
        ]
    )


def test_no_line_when_nothing_depends_on_the_environment(pytester):
    pytester.makepyfile("def test_anything():\n    pass\n")
    result = pytester.runpytest("-p", "tests.support.environment")
    result.assert_outcomes(passed=1)
    assert "environment-dependent" not in result.stdout.str()
