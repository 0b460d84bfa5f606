"""The package layout pyproject declares: every subpackage listed, the KFP folders mapped in."""

from __future__ import annotations

import tomllib

from conftest import REPO


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    cfg = _setuptools()
    src = REPO / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in (src / "edgeqat").rglob("__init__.py")}
    listed = set(cfg["packages"])
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    # the KFP folders (mapped in), and the data-only folders setuptools warns about if unlisted
    assert listed - found == {"edgeqat.components", "edgeqat.pipelines", "edgeqat.devices.data", "edgeqat.devices.profiles",
                              "edgeqat.serving"}  # the registered model's code, loaded by MLflow by path


def test_kfp_folders_install_as_subpackages():
    cfg = _setuptools()
    assert cfg["package-dir"] == {"": "src", "edgeqat.components": "components", "edgeqat.pipelines": "pipelines"}
    import edgeqat.components
    import edgeqat.pipelines

    assert edgeqat.components.__file__ == str(REPO / "components" / "__init__.py")
    assert edgeqat.pipelines.__file__ == str(REPO / "pipelines" / "__init__.py")
    assert "*.yaml" in _setuptools()["package-data"]["edgeqat.pipelines"]
