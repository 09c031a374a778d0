"""The auditor workspace: HTML pages at /audit/ for auditors (docs/audit.md)."""

from api.workspace.pages import install

__all__ = ["install"]
