"""Package discovery: `domains/` (fixed repository layout) installs as `mmapps_domains`."""

from setuptools import find_packages, setup

core_packages = find_packages(include=["mmapps", "mmapps.*"])
domain_packages = ["mmapps_domains" + name[len("domains"):] for name in find_packages(include=["domains", "domains.*"])]

setup(
    packages=core_packages + domain_packages,
    package_dir={"mmapps_domains": "domains"},
    package_data={"mmapps": ["recipes/*.yaml"], "mmapps_domains": ["*/recipes/*.yaml", "medical/deid/*.json", "medical/deid/LICENSE.txt"]},
)
