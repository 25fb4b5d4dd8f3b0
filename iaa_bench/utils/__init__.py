"""Shared plumbing: errors, the command-line exit path, atomic writes, offline weights, pyiqa access."""
