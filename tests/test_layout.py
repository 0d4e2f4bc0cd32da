"""The code installs under the one namespace ``echemd``: every package folder is listed, at its path."""

from helpers import ROOT, pyproject

TOP_LEVEL = ("config", "daemon", "drivers", "protocols")


def test_every_package_folder_is_installed_under_echemd_at_its_path():
    setuptools = pyproject()["tool"]["setuptools"]
    found = {".".join(("echemd", *init.parent.relative_to(ROOT).parts)) for top in TOP_LEVEL for init in (ROOT / top).rglob("__init__.py")}
    assert "echemd.protocols.analysis" in found and "echemd.protocols.io" in found
    assert set(setuptools["packages"]) == found  # (a folder left out would be missing from a wheel, not from an editable install)
    assert setuptools["package-dir"] == {name: "/".join(name.split(".")[1:]) for name in found}
