"""The rehearsal's network cut: sitecustomize.py (copied onto the kernel's PYTHONPATH) and probe.py."""
