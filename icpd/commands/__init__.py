"""Typer command functions, one module per area; ``icpd.cli`` registers them.

Modules here import heavy libraries inside the command functions only (``icpd --help`` stays fast).
"""
