"""How the runtime image's wheels are chosen: torch by requirement through pip,
DCGAN_TORCH_WHEEL as an override, and the torchvision shim only where a CPU
torch meets PyPI's CUDA torchvision.

pip runs for real against a find-links folder of small stand-in wheels (no
index, no config files), so these tests need no network and still check that
pip's own settings decide which torch build is used.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from dcgan_harness.localcloud import images
from dcgan_harness.localcloud.engine import LocalCloudError

TAG = "cp311-cp311-manylinux_2_28_x86_64"


def stand_in_wheel(folder: Path, project: str, version: str, tag: str = TAG) -> Path:
    """A wheel pip accepts for resolving and downloading: metadata only, no code."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{project}-{version}.dist-info"
    wheel = folder / f"{project}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        archive.writestr(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
        archive.writestr(f"{dist_info}/RECORD", "")
    return wheel


@pytest.fixture
def offline_pip(tmp_path, monkeypatch):
    """pip that sees only a find-links folder of stand-ins for numpy, pillow and torchvision 0.28.0."""
    links = tmp_path / "links"
    for project, version in (("numpy", "2.4.6"), ("pillow", "13.0.0"), ("torchvision", "0.28.0")):
        stand_in_wheel(links, project, version)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv(images.TORCH_WHEEL_ENV, raising=False)
    monkeypatch.setenv("DCGAN_LOCALCLOUD_CACHE", str(tmp_path / "cache"))
    return links


def names(wheels: list[Path]) -> list[str]:
    return sorted(w.name for w in wheels)


def test_torch_is_a_requirement_unless_a_wheel_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv(images.TORCH_WHEEL_ENV, raising=False)
    assert images.torch_source() == "torch==2.13.0"
    wheel = stand_in_wheel(tmp_path, "torch", "2.13.0+cpu")
    monkeypatch.setenv(images.TORCH_WHEEL_ENV, str(wheel))
    assert images.torch_source() == str(wheel)


def test_a_torch_wheel_override_that_is_not_a_file_is_one_line_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(images.TORCH_WHEEL_ENV, str(tmp_path / "nowhere.whl"))
    with pytest.raises(LocalCloudError) as raised:
        images.torch_source()
    message = str(raised.value)
    assert "\n" not in message
    assert f"DCGAN_TORCH_WHEEL={tmp_path / 'nowhere.whl'} is not a file" in message
    assert "unset it to let pip find torch==2.13.0" in message


def test_pip_picks_the_cpu_build_where_its_settings_offer_one_and_the_shim_comes_with_it(offline_pip):
    # Both builds on offer, as with PyTorch's CPU index beside PyPI: pip prefers the +cpu local version.
    stand_in_wheel(offline_pip, "torch", "2.13.0")
    stand_in_wheel(offline_pip, "torch", "2.13.0+cpu")
    wheels = images.runtime_wheels()
    assert names(wheels) == [
        "numpy-2.4.6-" + TAG + ".whl",
        "pillow-13.0.0-" + TAG + ".whl",
        "torch-2.13.0+cpu-" + TAG + ".whl",
        "torchvision-0.28.0-" + TAG + ".whl",
    ]
    dockerfile, files = images.runtime_dockerfile("dcgan-base:test", wheels)
    assert 'pip install --no-cache-dir --break-system-packages --no-index --find-links /wheels \\\n      "torch==2.13.0+cpu"' in dockerfile
    assert "COPY shim/ /usr/local/lib/python3.11/dist-packages/" in dockerfile
    assert sorted(k for k in files if k.startswith("shim/")) == [f"shim/{n}" for n in sorted(images.SHIM_FILES)]


def test_pypi_default_build_of_torch_needs_no_shim(offline_pip):
    stand_in_wheel(offline_pip, "torch", "2.13.0")
    wheels = images.runtime_wheels()
    assert "torch-2.13.0-" + TAG + ".whl" in names(wheels)
    dockerfile, files = images.runtime_dockerfile("dcgan-base:test", wheels)
    assert '"torch==2.13.0" "numpy==2.4.6" "pillow==13.0.0"' in dockerfile
    assert "shim" not in dockerfile
    assert not [k for k in files if k.startswith("shim/")]


def test_cpu_torchvision_beside_cpu_torch_needs_no_shim(offline_pip):
    stand_in_wheel(offline_pip, "torch", "2.13.0+cpu")
    stand_in_wheel(offline_pip, "torchvision", "0.28.0+cpu")
    wheels = images.runtime_wheels()
    assert "torchvision-0.28.0+cpu-" + TAG + ".whl" in names(wheels)
    dockerfile, files = images.runtime_dockerfile("dcgan-base:test", wheels)
    assert "torchvision-0.28.0+cpu-" + TAG + ".whl" in dockerfile
    assert "shim" not in dockerfile and not [k for k in files if k.startswith("shim/")]


def test_the_override_wheel_wins_over_what_pip_would_pick(offline_pip, tmp_path, monkeypatch):
    stand_in_wheel(offline_pip, "torch", "2.13.0")
    own = stand_in_wheel(tmp_path / "mine", "torch", "2.13.0+cpu")
    monkeypatch.setenv(images.TORCH_WHEEL_ENV, str(own))
    wheels = images.runtime_wheels()
    assert [n for n in names(wheels) if n.startswith("torch-")] == ["torch-2.13.0+cpu-" + TAG + ".whl"]


def test_no_torch_build_for_the_requirement_fails_in_one_line_naming_pip(offline_pip):
    with pytest.raises(LocalCloudError) as raised:
        images.runtime_wheels()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("pip download torch==2.13.0 failed")
    assert "full log:" in message
