"""Apache Airflow provider for Runway video generation through CometAPI."""

from __future__ import annotations

__version__ = "0.1.0"
