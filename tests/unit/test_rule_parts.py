"""The parts the rules stand on: reading templates safely and reading commands."""

from __future__ import annotations

import pytest

from dcgan_harness.rules import commands
from dcgan_harness.rules.templates import Resolver, Unknown, condition_value, lookup_calls

# --- Templates from students' files are rendered in a sandbox -------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 100000000 }}",
        "{{ ('x' * 9999) * 9999 }}",
        "{{ 10 ** 100000 }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ '%1000000000s' % 'x' }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{{ lookup('pipe', 'touch /tmp/should-not-exist') }}",
    ],
)
def test_unsafe_or_huge_templates_are_unknown_not_run(template):
    with pytest.raises(Unknown):
        Resolver({}).render(template)


def test_variables_render_through_each_other():
    resolver = Resolver({"base": 3600, "twice": "{{ base * 2 }}", "run_async": "{{ twice }}"})
    assert resolver.render("{{ run_async }}") == "7200"


def test_a_variable_that_refers_to_itself_is_unknown():
    with pytest.raises(Unknown):
        Resolver({"a": "{{ b }}", "b": "{{ a }}"}).render("{{ a }}")


def test_lenient_rendering_keeps_unknown_parts_as_placeholders():
    resolver = Resolver({"work": "{{ ansible_facts['user_dir'] }}/dcgan"}, lenient=True)
    assert resolver.render("{{ work }}/output.txt") == "{?}/dcgan/output.txt"
    assert resolver.render("{{ item.path | basename }}") == "<file name>"


@pytest.mark.parametrize(
    "condition, variables, expected",
    [
        (False, {}, False),
        ("false", {}, False),
        ("1 == 2", {}, False),
        ("{{ false }}", {}, False),
        ("enabled", {"enabled": False}, False),
        ("enabled | bool", {"enabled": "no"}, False),
        (True, {}, True),
        ("enabled", {"enabled": "{{ 1 < 2 }}"}, True),
        # Facts, registered results and undefined names are settled only at run time.
        ("ansible_facts is defined", {}, None),
        ("result is succeeded", {}, None),
        ("missing", {}, None),
        ("dcgan_mnist_dir | length > 0", {"dcgan_mnist_dir": ""}, False),
    ],
)
def test_conditions_settled_by_the_playbook_alone(condition, variables, expected):
    assert condition_value(condition, Resolver(variables)) is expected


@pytest.mark.parametrize(
    "text, expression, plugins",
    [
        ("{{ lookup('pipe', 'id') }}", False, ["pipe"]),
        ("{{ query('ansible.builtin.lines', 'id') }}", False, ["ansible.builtin.lines"]),
        ("{{ q('items', [1]) }}", False, ["items"]),
        ("{{ lookup('pi' ~ 'pe', 'id') }}", False, [None]),
        ("{{ lookup(name, 'id') }}", False, [None]),
        ("{% set l = lookup %}{{ l('pipe', 'id') }}", False, [None]),
        ("lookup('env', 'HOME') == '/root'", True, ["env"]),
        ("plain text with lookup('pipe') in it", False, []),
        ("{{ unbalanced", False, []),
    ],
)
def test_lookup_calls_name_their_plugin(text, expression, plugins):
    assert list(lookup_calls(text, expression)) == plugins


# --- Commands are read as shell words ---------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "docker build -t x .",
        "docker image build .",
        "sudo docker buildx build -t x .",
        "/usr/bin/docker -H unix:///run/docker.sock build .",
        "docker --log-level warn compose -f c.yaml build",
        "docker-compose build",
        "docker compose up --build -d",
        "cd app && bash -c 'docker build .'",
    ],
)
def test_image_builds_are_recognised(command):
    assert commands.builds_image(command)


@pytest.mark.parametrize(
    "command",
    [
        "docker run --rm x",
        "docker container run x",
        "docker compose --project-directory {{ work_dir }} up",
        "docker-compose up",
        "docker start -a trainer",
        "sh -c \"docker run x > output.txt\"",
    ],
)
def test_container_runs_are_recognised(command):
    assert commands.runs_container(command)


@pytest.mark.parametrize(
    "command",
    ["apt-get install -y docker.io", "docker ps", "docker image ls", "systemctl start docker", "docker rm -f x"],
)
def test_other_commands_are_neither(command):
    assert not commands.builds_image(command) and not commands.runs_container(command)


def test_argv_form_is_read_as_a_command_line():
    assert commands.command_text({"argv": ["docker", "buildx", "build", "-t", "x y", "."]}) == (
        "docker buildx build -t 'x y' ."
    )


@pytest.mark.parametrize(
    "command, detached",
    [
        ("docker run -d --name x img", True),
        ("docker run --name x -itd img", True),
        ("docker run --detach img", True),
        ("docker compose up -d", True),
        ("docker start trainer", True),
        ("docker run --rm img python train.py", False),
        ("docker compose up --abort-on-container-exit", False),
        ("docker start -a trainer", False),
    ],
)
def test_detached_runs_are_told_from_attached_ones(command, detached):
    assert commands.runs_detached(command) is detached


@pytest.mark.parametrize(
    "command, waits",
    [("docker wait dcgan", True), ("docker logs -f dcgan", True), ("docker logs dcgan", False), ("docker ps", False)],
)
def test_waiting_for_a_container(command, waits):
    assert commands.waits_for_container(command) is waits
