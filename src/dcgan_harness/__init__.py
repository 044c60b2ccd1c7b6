"""Harness that deploys the distributed DCGAN with Ansible and proves the deployment works."""

__version__ = "0.1.0"
