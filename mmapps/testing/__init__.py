"""The plugin self-test, importable by third parties.

In a plugin's own test suite::

    from mmapps.plugins import get_domain
    from mmapps.testing import check_domain

    def test_contracts(tmp_path):
        check_domain(get_domain("ecg"), tmp_path)   # raises ContractError naming the broken contract

or with the pytest fixtures (``pytest_plugins = ["mmapps.testing.pytest_plugin"]`` in conftest.py
and a ``mmapps_domain_name`` fixture). ``mmapps <domain> check`` runs the same from the CLI, and
``train`` runs its cheap part (`preflight`) before the first epoch.
"""

from mmapps.testing.contracts import CONTRACTS, Contract
from mmapps.testing.errors import ContractError
from mmapps.testing.selftest import CheckReport, build_model_checked, check_domain, preflight

__all__ = ["CONTRACTS", "CheckReport", "Contract", "ContractError", "build_model_checked", "check_domain", "preflight"]
