"""The mmapps plugin fixtures (`mmapps.testing.pytest_plugin`) for the `ecg` domain."""

import pytest

pytest_plugins = ["mmapps.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def mmapps_domain_name() -> str:
    return "ecg"
