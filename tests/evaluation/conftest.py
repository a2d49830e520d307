"""Shared fixtures of the evaluation tests: one tiny trained run (the real trainer, via its command line)."""
import pytest

TINY = ["--epochs", "1", "--T", "4", "--hidden", "16"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from sast_deploy.train import main

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    return out
