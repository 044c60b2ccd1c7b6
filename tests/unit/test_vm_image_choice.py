"""Which VM image the local cloud builds its VMs on: --vm-image, else $DCGAN_VM_IMAGE, else bookworm."""

from __future__ import annotations

import pytest

from dcgan_harness.localcloud import images
from dcgan_harness.localcloud.engine import LocalCloudError


def test_default_is_bookworm_and_the_environment_chooses_another(monkeypatch):
    monkeypatch.delenv("DCGAN_VM_IMAGE", raising=False)
    assert images.chosen_vm_image() == "bookworm"
    monkeypatch.setenv("DCGAN_VM_IMAGE", "bullseye")
    assert images.chosen_vm_image() == "bullseye"
    # The command-line choice wins over the environment.
    assert images.chosen_vm_image("ubuntu") == "ubuntu"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_an_unknown_vm_image_is_one_line_naming_where_it_came_from_and_the_choices(monkeypatch, source):
    if source == "argument":
        monkeypatch.delenv("DCGAN_VM_IMAGE", raising=False)
        call, named = (lambda: images.chosen_vm_image("centos")), "--vm-image 'centos'"
    else:
        monkeypatch.setenv("DCGAN_VM_IMAGE", "centos")
        call, named = images.chosen_vm_image, "DCGAN_VM_IMAGE 'centos'"
    with pytest.raises(LocalCloudError) as raised:
        call()
    assert str(raised.value) == f"{named} is not a VM image; use one of bookworm, bullseye, ubuntu"


def test_each_vm_image_has_its_own_repository_so_builds_never_drop_each_other():
    repositories = {images.vm_repository(name) for name in images.VM_IMAGES}
    assert len(repositories) == len(images.VM_IMAGES)
    # The Debian 12 image keeps the name every earlier run used.
    assert images.vm_repository("bookworm") == "dcgan-vm"


def test_debian_sources_name_the_suite_asked_for():
    sources = images.debian_sources("http://deb.debian.org/debian", "http://deb.debian.org/debian-security", "bullseye")
    assert "Suites: bullseye bullseye-updates\n" in sources
    assert "Suites: bullseye-security\n" in sources
    assert "bookworm" not in sources
