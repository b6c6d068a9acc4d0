"""Runs whenever new Runway videos land in storage (asset events on the ``runway-videos`` alias)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, task

with DAG(
    dag_id="example_runway_new_videos",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=[AssetAlias("runway-videos")],
    catchup=False,
    tags=["example", "runway"],
) as dag:

    @task
    def list_new_videos(triggering_asset_events=None) -> list[dict]:
        videos = [
            {"uri": event.asset.uri, **(event.extra or {})}
            for events in (triggering_asset_events or {}).values()
            for event in events
        ]
        for video in videos:
            print(
                f"New video {video['uri']} from Runway task {video.get('runway_task_id')} ({video.get('bytes')} bytes)"
            )
        return videos

    list_new_videos()
