"""similarity.csv: near-identical playbooks once task order, names, comments,
whitespace and the spelling of modules are set aside."""

from __future__ import annotations

import csv
import io

from dcgan_harness.grade import similarity

ORIGINAL = b"""\
- hosts: cloud
  become: true
  tasks:
    - name: Install the packages
      ansible.builtin.apt:
        name: [docker.io, python3-docker, git]
        update_cache: true
    - name: Clone the DCGAN
      ansible.builtin.git:
        repo: https://github.com/otavioon/Distributed-DCGAN.git
        dest: "{{ dcgan_dir }}"
    - name: Build the image
      community.docker.docker_image:
        name: dist_dcgan
        source: build
        build: {path: "{{ dcgan_dir }}"}
    - name: Fetch the output
      ansible.builtin.fetch: {src: "{{ dcgan_dir }}/output.txt", dest: resultados/}
"""

# The same tasks renamed, reordered, recommented, re-spaced, with the short
# module names, key=value arguments and another variable name.
DISGUISED = b"""\
# My own work
- hosts: cloud
  become: true
  tasks:
    - name: get the code   # clone first
      git:   repo=https://github.com/otavioon/Distributed-DCGAN.git   dest={{ where }}
    - name: packages
      apt:
        update_cache: true
        name:
          - docker.io
          - python3-docker
          - git
    - name: retrieve results
      fetch:
        dest: resultados/
        src: "{{ where }}/output.txt"
    - name: docker build
      docker_image: {build: {path: "{{ where }}"}, source: build, name: dist_dcgan}
"""

DIFFERENT = b"""\
- hosts: cloud
  tasks:
    - name: Install Docker the other way
      ansible.builtin.shell: curl -fsSL https://get.docker.com | sh
    - name: Run the training
      ansible.builtin.command: docker run --rm dist_dcgan python dist_dcgan.py
"""


def test_renamed_and_reordered_tasks_are_near_identical():
    [pair] = [p for p in similarity.pairs({"ana": ORIGINAL, "bruno": DISGUISED}) if {p.first, p.second} == {"ana", "bruno"}]
    assert pair.score == 1.0 and not pair.identical_file


def test_one_changed_argument_costs_a_little_and_a_different_playbook_is_not_listed():
    edited = ORIGINAL.replace(b"resultados/", b"results/")
    found = {(p.first, p.second): p.score for p in similarity.pairs({"ana": ORIGINAL, "carla": edited, "dani": DIFFERENT})}
    assert 0.8 <= found[("ana", "carla")] < 1.0
    assert ("ana", "dani") not in found and ("carla", "dani") not in found


def test_what_the_template_gives_everyone_does_not_count():
    template = b"- hosts: cloud\n  tasks:\n    - name: Packages\n      ansible.builtin.apt: {name: [docker.io, python3-docker, git], update_cache: true}\n"
    own_a = template + b"    - name: mine\n      ansible.builtin.debug: {msg: one}\n"
    own_b = template + b"    - name: mine\n      ansible.builtin.command: echo two\n"
    without = {(p.first, p.second): p.score for p in similarity.pairs({"a": own_a, "b": own_b})}
    with_template = {(p.first, p.second): p.score for p in similarity.pairs({"a": own_a, "b": own_b}, template)}
    assert without.get(("a", "b"), 0) >= 0.5 and ("a", "b") not in with_template


def test_unreadable_playbooks_are_compared_byte_for_byte_only():
    broken = b"- hosts: [cloud\n"
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
        for i in range(9)
    )
    found = similarity.pairs({"x": broken, "y": broken, "z": bomb, "w": ORIGINAL})
    assert [(p.first, p.second, p.score, p.identical_file) for p in found] == [("x", "y", 1.0, True)]


def test_the_csv_lists_pairs_with_their_score():
    rows = list(csv.reader(io.StringIO(similarity.render(similarity.pairs({"ana": ORIGINAL, "bruno": DISGUISED})))))
    assert rows == [["first", "second", "score", "near_identical", "identical_file"], ["ana", "bruno", "1.000", "yes", "no"]]
