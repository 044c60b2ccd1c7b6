"""yamllint, syntax-check and ansible-lint on the playbook under test (--playbook)."""

from __future__ import annotations


def test_yamllint_accepts_the_playbook(tool, repo_root, playbook_path):
    result = tool("yamllint", "-f", "parsable", "-c", str(repo_root / ".yamllint"), str(playbook_path), cwd=repo_root)
    assert result.returncode == 0, f"yamllint found problems:\n{result.stdout}{result.stderr}"


def test_yamllint_accepts_the_inventory(tool, repo_root):
    result = tool("yamllint", "-f", "parsable", "-c", str(repo_root / ".yamllint"), "inventory.yaml", cwd=repo_root)
    assert result.returncode == 0, f"yamllint found problems:\n{result.stdout}{result.stderr}"


def test_syntax_check_passes(tool, repo_root, playbook_path):
    result = tool("ansible-playbook", "--syntax-check", "-i", "inventory.yaml", str(playbook_path), cwd=repo_root)
    assert result.returncode == 0, f"ansible-playbook --syntax-check failed:\n{result.stdout}{result.stderr}"


def test_ansible_lint_production_profile_is_clean(tool, repo_root, playbook_path):
    result = tool(
        "ansible-lint", "--offline", "--nocolor", "-c", str(repo_root / ".ansible-lint"),
        "--profile", "production", "-f", "pep8", str(playbook_path),
        cwd=repo_root, timeout=300,
    )
    assert result.returncode == 0, f"ansible-lint (production profile) found problems:\n{result.stdout}{result.stderr}"
