"""Offline testing aids: a local CometAPI-compatible Runway emulator."""

from __future__ import annotations

from runway_provider.testing.emulator import Emulator, EmulatorServer, Scenario

__all__ = ["Emulator", "EmulatorServer", "Scenario"]
