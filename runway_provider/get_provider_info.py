"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from runway_provider import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-runway",
        "name": "Runway (CometAPI)",
        "description": "Generate Runway videos through CometAPI, wait in the triggerer, keep the results.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Runway (CometAPI)",
                "external-doc-url": "https://apidoc.cometapi.com/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {"integration-name": "Runway (CometAPI)", "python-modules": ["runway_provider.operators.runway"]}
        ],
        "sensors": [
            {"integration-name": "Runway (CometAPI)", "python-modules": ["runway_provider.sensors.runway"]}
        ],
        "hooks": [
            {"integration-name": "Runway (CometAPI)", "python-modules": ["runway_provider.hooks.runway"]}
        ],
        "triggers": [
            {"integration-name": "Runway (CometAPI)", "python-modules": ["runway_provider.triggers.runway"]}
        ],
        "transfers": [
            {
                "source-integration-name": "Runway (CometAPI)",
                "target-integration-name": "Common IO",
                "python-module": "runway_provider.transfers.runway_to_object_storage",
            }
        ],
        "extra-links": ["runway_provider.links.runway.RunwayVideoLink"],
        "connection-types": [
            {
                "connection-type": "runway",
                "hook-class-name": "runway_provider.hooks.runway.RunwayHook",
                "hook-name": "Runway (CometAPI)",
                "conn-fields": {
                    "runway_version": {
                        "label": "X-Runway-Version",
                        "description": "Sent as the X-Runway-Version header on every request.",
                        "schema": {"type": ["string", "null"], "default": "2024-11-06"},
                    },
                    "callback_url": {
                        "label": "Default callback URL",
                        "description": "Webhook CometAPI requires on each generation, unless the task sets one.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["integer", "null"], "default": 60},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API key", "host": "Base URL"},
                    "placeholders": {
                        "password": "Your CometAPI key",
                        "host": "https://api.cometapi.com",
                    },
                },
            }
        ],
    }
