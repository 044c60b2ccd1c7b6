"""The local cloud's apt cache: every VM's apt goes through it, a second VM
gets its packages from it, and apt still works when it does not answer."""

from __future__ import annotations

import socket
import subprocess

import pytest

from dcgan_harness.localcloud import aptcache, vms
from dcgan_harness.localcloud.command import main as cloud_main
from dcgan_harness.localcloud.engine import LocalCloudError

pytestmark = pytest.mark.localcloud

# Small, in every Debian and Ubuntu release, and installed by nothing else here.
PACKAGE = "hello"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_in(vm: vms.Machine, docker_client, script: str) -> str:
    code, output = docker_client.containers.get(vm.name).exec_run(["bash", "-c", script])
    text = output.decode(errors="replace")
    assert code == 0, f"{script!r} failed in {vm.name}: {text[-600:]}"
    return text


def cache_log(docker_client) -> list[str]:
    code, output = docker_client.containers.get(aptcache.APT_CACHE_NAME).exec_run(["cat", aptcache.LOG_FILE])
    assert code == 0, output.decode(errors="replace")
    return output.decode(errors="replace").splitlines()


def package_records(lines: list[str]) -> list[tuple[str, str]]:
    """(kind, path) of the log's lines for PACKAGE's .deb: I = fetched from the archive, O = sent to a VM."""
    records = []
    for line in lines:
        fields = line.split("|")
        if len(fields) >= 5 and f"/{PACKAGE}_" in fields[4] and fields[4].endswith(".deb"):
            records.append((fields[1], fields[4]))
    return records


DOWNLOAD = f"apt-get update -q && apt-get install -y -q --download-only {PACKAGE} && apt-get clean"


@pytest.fixture(scope="module")
def two_vms(docker_client):
    """Two fresh VMs of one run, removed afterwards even when the tests fail."""
    run_id = "ta" + vms.new_run_id()
    try:
        yield vms.up(nodes=2, run_id=run_id, client=docker_client)
    finally:
        vms.down(run_id, client=docker_client)


def test_every_vm_names_the_cache_as_its_apt_proxy(two_vms, docker_client):
    expected = f"http://{aptcache.SHARED.address_for_vms(docker_client)}"
    for vm in two_vms.vms:
        assert run_in(vm, docker_client, f"{aptcache.VM_HOOK_PATH} http://deb.debian.org/").strip() == expected
        config = run_in(vm, docker_client, "apt-config dump Acquire::http::Proxy-Auto-Detect")
        assert aptcache.VM_HOOK_PATH in config


def test_a_second_fresh_vm_gets_its_packages_from_the_cache(two_vms, docker_client):
    first, second = two_vms.vms
    before = len(cache_log(docker_client))
    run_in(first, docker_client, DOWNLOAD)
    after_first = cache_log(docker_client)
    served = package_records(after_first[before:])
    assert "O" in {kind for kind, _ in served}, f"the first VM's download of {PACKAGE} did not go through the cache"

    run_in(second, docker_client, DOWNLOAD)
    records = package_records(cache_log(docker_client)[len(after_first):])
    assert records, f"the second VM's download of {PACKAGE} did not go through the cache"
    assert {kind for kind, _ in records} == {"O"}, f"the second VM's {PACKAGE} came from the archive: {records}"


# What the VM fetches: the page's body, or the refusal, on one line each.
FETCH_REPORT_PAGE = """python3 - <<'EOF'
import urllib.error, urllib.request
try:
    print(urllib.request.urlopen("http://{address}/acng-report.html", timeout=10).read().decode(errors="replace"))
except urllib.error.HTTPError as error:
    print("refused:", error.code)
EOF"""


def test_the_cache_offers_vms_no_report_or_maintenance_page(two_vms, docker_client):
    address = aptcache.SHARED.address_for_vms(docker_client)
    page = run_in(two_vms.vms[0], docker_client, FETCH_REPORT_PAGE.format(address=address))
    assert "maintenance page" not in page and "Command And Control" not in page, page[:600]


def test_apt_works_without_the_cache(two_vms, docker_client):
    """Last of the VM tests: it points the second VM's hook at a port where nothing answers."""
    vm = two_vms.vms[1]
    dead = f"127.0.0.1:{free_port()}"
    container = docker_client.containers.get(vm.name)
    aptcache.configure_vm(container, dead)
    assert run_in(vm, docker_client, f"{aptcache.VM_HOOK_PATH} http://deb.debian.org/").strip() == "DIRECT"
    run_in(vm, docker_client, DOWNLOAD)


def test_hook_names_a_cache_that_answers_and_says_direct_otherwise(tmp_path):
    hook = tmp_path / "apt-proxy"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        hook.write_text(aptcache.vm_hook(f"127.0.0.1:{port}"))
        answered = subprocess.run(["bash", str(hook), "http://deb.debian.org/"], capture_output=True, text=True)
    assert answered.stdout.strip() == f"http://127.0.0.1:{port}"
    hook.write_text(aptcache.vm_hook(f"127.0.0.1:{free_port()}"))
    silent = subprocess.run(["bash", str(hook), "http://deb.debian.org/"], capture_output=True, text=True)
    assert silent.stdout.strip() == "DIRECT"


@pytest.fixture
def own_cache(docker_client):
    """A cache of this test's own, beside the shared one, removed with its data afterwards."""
    suffix = vms.new_run_id()
    cache = aptcache.AptCache(name=f"dcgan-apt-cache-t{suffix}", volume=f"dcgan-apt-cache-t{suffix}", port=free_port())
    try:
        yield cache
    finally:
        aptcache.stop_apt_cache(docker_client, cache, keep_data=False)


def test_stopping_keeps_the_cache_data_and_removing_all_drops_it(own_cache, docker_client):
    aptcache.ensure_apt_cache(docker_client, own_cache)
    assert aptcache.stop_apt_cache(docker_client, own_cache) == [own_cache.name]
    assert docker_client.volumes.list(filters={"name": f"^{own_cache.volume}$"})
    aptcache.ensure_apt_cache(docker_client, own_cache)
    removed = aptcache.stop_apt_cache(docker_client, own_cache, keep_data=False)
    assert removed == [own_cache.name, own_cache.volume]
    assert not docker_client.volumes.list(filters={"name": f"^{own_cache.volume}$"})
    assert not docker_client.containers.list(all=True, filters={"name": f"^{own_cache.name}$"})


def test_busy_port_is_one_line_naming_the_setting(own_cache, docker_client):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", own_cache.port))
        listener.listen()
        with pytest.raises(LocalCloudError) as error:
            aptcache.ensure_apt_cache(docker_client, own_cache)
    message = str(error.value)
    assert f"port {own_cache.port}" in message and "DCGAN_APT_CACHE_PORT" in message and "\n" not in message
    assert not docker_client.containers.list(all=True, filters={"name": f"^{own_cache.name}$"})


def test_cli_down_all_with_a_run_id_is_refused_in_one_line(capsys):
    assert cloud_main(["down", "--all", "--run-id", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --all") and "\n" not in err
