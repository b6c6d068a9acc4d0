"""Review before publishing: a person decides, in the Airflow UI, what becomes of each draft.

generate → store the draft under ``drafts/`` → a reviewer chooses, under Browse → Required Actions:

- **Publish**: upscale the draft (``/runwayml/v1/video_upscale``, a paid job, so only after
  approval), store the result under ``published/`` and announce it on the ``runway-published``
  asset alias;
- **Regenerate**: start a new run of this DAG with the same prompt and a new seed; that run stores
  its own draft and asks again;
- **Discard**: end here, spending nothing more (the draft stays under ``drafts/`` for the record).

While the reviewer thinks, nothing runs and nothing is spent: the review task waits in the
``awaiting_input`` state, holding no worker, pool slot or trigger. The decision can also come
through Airflow's REST API, e.g. from a review tool::

    PATCH /api/v2/dags/example_runway_review/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails
    {"chosen_options": ["Publish"]}

Under ``airflow dags test`` the review waits for that answer too: start ``airflow api-server`` on
the same ``AIRFLOW_HOME`` and answer in its UI or with the call above.

Run conf may choose ``destination`` only under ``RUNWAY_EXAMPLES_ROOT`` (see
``runway_examples_root.py``, which goes with this file).
"""

from __future__ import annotations

import datetime
import secrets

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task
from runway_examples_root import DESTINATION, under_root

from runway_provider.operators.runway import RunwayImageToVideoOperator, RunwayUpscaleVideoOperator
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

try:
    from airflow.providers.standard.operators.hitl import HITLBranchOperator
except Exception:
    # Airflow 3.0: the standard provider raises "Human in the loop functionality needs Airflow 3.1+".
    # This file then defines no DAG: nothing to run, and no import error in the UI.
    HITLBranchOperator = None

DAG_ID = "example_runway_review"
# Drafts are announced on their own alias, so that DAGs scheduled on finished videos never start on
# a draft nobody approved; published videos on theirs.
DRAFTS_ALIAS = "runway-drafts"
PUBLISHED_ALIAS = "runway-published"
# An unanswered review ends as "Discard" after this long: nothing is spent unless a person chose "Publish".
REVIEW_TIMEOUT = datetime.timedelta(days=3)
MAX_SEED = 4294967295

# What the reviewer sees (Markdown). The Runway link plays in the browser; it expires 24 to 48 hours
# after generation, the stored draft does not.
REVIEW_BODY = """\
**Prompt:** {{ params.prompt_text }}

**Seed:** {{ params.seed }}{% if params.regenerated_from %} (a new take of run `{{ params.regenerated_from }}`){% endif %}

**Stored draft:** `{{ ti.xcom_pull(task_ids='store_draft')['uri'] }}`

[Watch the draft]({{ ti.xcom_pull(task_ids='generate', key='runway_task')['video_url'] }}) \
(Runway's link expires 24 to 48 hours after generation; the stored draft stays.)

- **Publish** upscales it (a paid job) and stores the result under `published/`.
- **Regenerate** starts a new run with the same prompt and a new seed.
- **Discard** ends here without spending anything more.
"""

if HITLBranchOperator is not None:
    with DAG(
        dag_id=DAG_ID,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        schedule=None,
        catchup=False,
        tags=["example", "runway"],
        params={
            "prompt_text": Param(
                "A paper boat drifts down a rain-soaked street at dusk.", type="string", maxLength=1000
            ),
            "prompt_image": Param("https://example.com/paper-boat.jpg", type="string"),
            "seed": Param(42, type="integer", minimum=0, maximum=MAX_SEED),
            "destination": Param(DESTINATION, type="string", pattern="/$", description="Ends with /."),
            # Set by "Regenerate" on the run it starts; shown to the reviewer.
            "regenerated_from": Param(None, type=["null", "string"]),
        },
    ) as dag:

        @task
        def check_run_conf(params: dict | None = None) -> None:
            """Before anything is paid for: the destination stays under RUNWAY_EXAMPLES_ROOT."""
            assert params is not None
            under_root("destination", params["destination"])

        # --8<-- [start:draft]
        generate = RunwayImageToVideoOperator(
            task_id="generate",
            prompt_image="{{ params.prompt_image }}",
            prompt_text="{{ params.prompt_text }}",
            model="gen4_turbo",
            ratio="1280:720",
            duration=5,
            seed="{{ params.seed }}",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=5,
            timeout=30 * 60,
            retries=2,
        )
        store_draft = RunwayToObjectStorageOperator(
            task_id="store_draft",
            runway_task=generate.output,
            destination="{{ params.destination }}drafts/",
            asset_alias=DRAFTS_ALIAS,
            retries=2,
        )
        # --8<-- [end:draft]

        # --8<-- [start:review]
        review = HITLBranchOperator(
            task_id="review",
            subject="Publish this draft? {{ params.prompt_text | truncate(60) }}",
            body=REVIEW_BODY,
            options=["Publish", "Regenerate", "Discard"],
            # The chosen option's task runs; the other two branches are skipped.
            options_mapping={"Publish": "publish", "Regenerate": "regenerate", "Discard": "discard"},
            defaults=["Discard"],
            response_timeout=REVIEW_TIMEOUT,
        )
        # --8<-- [end:review]

        # --8<-- [start:publish]
        publish = EmptyOperator(task_id="publish")
        # Runway's result URLs expire within 24-48 h and a review can take longer: fetching the finished
        # task again (one GET, free) gives a fresh URL to upscale from.
        fresh_draft = RunwayTaskSensor(
            task_id="fresh_draft_url", runway_task_id=generate.output, poll_interval=5, timeout=60
        )
        upscale = RunwayUpscaleVideoOperator(
            task_id="upscale",
            video="{{ ti.xcom_pull(task_ids='fresh_draft_url')['video_url'] }}",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=5,
            timeout=30 * 60,
            retries=2,
        )
        store_published = RunwayToObjectStorageOperator(
            task_id="store_published",
            runway_task=upscale.output,
            # Named like the draft it was approved from: drafts/<id>.mp4 becomes published/<id>.mp4.
            destination="{{ params.destination }}published/{{ ti.xcom_pull(task_ids='generate') }}.mp4",
            asset_alias=PUBLISHED_ALIAS,
            retries=2,
        )
        publish >> fresh_draft >> upscale >> store_published
        # --8<-- [end:publish]

        # --8<-- [start:regenerate]
        @task
        def regenerate(params: dict | None = None, run_id: str | None = None) -> dict:
            """The next take's run conf: the same prompt and image, a new seed."""
            assert params is not None
            seed = secrets.randbelow(MAX_SEED + 1)
            while seed == params["seed"]:
                seed = secrets.randbelow(MAX_SEED + 1)
            return {**params, "seed": seed, "regenerated_from": run_id}

        # A DAG has no loops: the new take is a new run of this DAG, which generates, stores its own
        # draft and asks the reviewer again. Each take keeps its cost and its decision in its own run.
        next_take = regenerate()
        TriggerDagRunOperator(task_id="review_new_take", trigger_dag_id=DAG_ID, conf=next_take)
        # --8<-- [end:regenerate]

        discard = EmptyOperator(task_id="discard")

        check_run_conf() >> generate >> store_draft >> review >> [publish, next_take, discard]
