"""The environment is the one pinned: requirements.txt's direct pins and constraints.txt's transitive ones agree,
and the running environment holds the versions constraints.txt names (``make install`` passes it to pip)."""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements or constraints file, names normalised as pip compares them."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"{path.name}: {line!r} is not pinned with =="
        pins[_normalised(re.sub(r"\[.*\]", "", name))] = version.strip()
    return pins


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def test_every_direct_pin_is_the_version_the_constraints_pin():
    direct, locked = _pins(REPO / "requirements.txt"), _pins(REPO / "constraints.txt")
    differ = {name: (version, locked.get(name)) for name, version in direct.items() if locked.get(name) != version}
    assert not differ, f"requirements.txt and constraints.txt disagree (requirements, constraints): {differ}"


def test_the_installed_environment_is_the_one_constraints_pins():
    """Every installed package that constraints.txt names has its version; every direct pin is installed. (A
    package constraints.txt names may be absent: CUDA's wheels come with torch on x86_64, not on aarch64.)"""
    # the environment's own site-packages: importing setuptools puts its _vendor folder on sys.path, whose
    # vendored copies (packaging, zipp, ...) are no install of their own
    site_packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {_normalised(d.metadata["Name"]): d.version for d in metadata.distributions(path=site_packages)}
    differ = {name: (version, installed[name]) for name, version in _pins(REPO / "constraints.txt").items()
              if name in installed and installed[name] != version}
    assert not differ, f"installed versions differ from constraints.txt (pinned, installed): {differ}"
    missing = sorted(_pins(REPO / "requirements.txt").keys() - installed.keys())
    assert not missing, f"requirements.txt's packages not installed: {missing}"


def test_the_make_commands_use_the_data_root_the_environment_names_and_data_here_without_one(tmp_path):
    """The README and the failure paragraphs send a lab to POSESWEEP_DATA_ROOT (its data on a share, a full disk):
    `make study` and `make airflow` set it from their DATA_ROOT, which ignored it, so the cohort was looked for in
    the repository's data/ and the disk paragraph's fix did nothing."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]

    def data_root(environment: dict, *arguments: str) -> str:
        env = {name: value for name, value in os.environ.items() if name not in ("POSESWEEP_DATA_ROOT", "DATA_ROOT")}
        printed = subprocess.run(["make", "-C", str(repo), "-pn", "study", "CONF={}", *arguments],
                                 env={**env, **environment}, capture_output=True, text=True, check=True).stdout
        return re.search(r"^POSESWEEP_DATA_ROOT := (.*)$", printed, re.MULTILINE).group(1)

    assert data_root({"POSESWEEP_DATA_ROOT": str(tmp_path / "share")}) == str(tmp_path / "share")
    assert data_root({}) == str(repo / "data")
    assert data_root({"POSESWEEP_DATA_ROOT": str(tmp_path / "share")}, f"DATA_ROOT={tmp_path / 'given'}") == str(
        tmp_path / "given")
