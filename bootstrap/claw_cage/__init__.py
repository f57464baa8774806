"""claw-cage: install OpenClaw in Docker behind a cage (hardened container, SSH-only gateway,
LAN firewall). Standard library only; runs on Python 3.8+."""

__version__ = "0.1.0"
