"""Test-time scaling evaluation (`runner`), its config and plots."""
