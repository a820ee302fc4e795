"""TensorBoard seen as a user sees it: a real `tensorboard` server on a trained run, read over HTTP through the
endpoints its web page reads (runs, scalar tags and series, the hparams table), compared with the run's files.

The requests are the ones TensorBoard 2.x's own frontend sends: the hparams plugin takes POSTs whose JSON body is
the request proto (`/experiment/<id>/data/plugin/hparams/experiment` with `{"experimentName": <id>}` and
`/session_groups`), the Time Series dashboard POSTs a form field `requests` to `/timeSeries`; the older scalars
dashboard GETs `/data/plugin/scalars/tags` and `/scalars?run=&tag=`. Without a `Content-Type: application/json`
header the hparams plugin sees no body and answers 400, so the header is part of what is tested.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, compose_config

from resnet_exp.run import train

TENSORBOARD = Path(sys.executable).parent / "tensorboard"
EXPERIMENT = "defaultExperimentId"  # the id TensorBoard's frontend uses for a single --logdir
RUN = "."  # the run dir itself: the runner writes its events (scalars and hparams) straight into it
SCALARS = {"train/loss", "train/error", "test/loss", "test/error", "lr", "epoch"}
STARTUP_S = 60
# No proxy for the local server, whatever the environment says.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, body: bytes | None = None, content_type: str | None = None) -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    with HTTP.open(urllib.request.Request(url, data=body, headers=headers), timeout=10) as response:
        return json.loads(response.read())


def post_json(url: str, payload: dict[str, Any]) -> Any:
    """As the frontend's HttpClient posts an object: a JSON body."""
    return request(url, json.dumps(payload).encode(), "application/json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    cfg = compose_config(*FAST, "data.train_size=256", "data.test_size=64", "trainer.progress=false",
                         "trainer.max_iters=10", "trainer.eval_every=5", "optim.lr=0.05")
    train(cfg, run_dir, "synthetic")
    return run_dir


def wait_for_server(proc: subprocess.Popen, log: Path) -> str:
    """The server's URL once it serves the run's scalars and hparams (TensorBoard loads the logdir in the
    background after it starts listening)."""
    deadline = time.monotonic() + STARTUP_S
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tensorboard exited with {proc.returncode}:\n{log.read_text()}")
        if url is None:
            match = re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", log.read_text())
            url = match and match.group(1)
        if url:
            try:
                tags = request(f"{url}/data/plugin/scalars/tags")
                experiment = post_json(f"{url}/experiment/{EXPERIMENT}/data/plugin/hparams/experiment",
                                       {"experimentName": EXPERIMENT})
                if set(tags.get(RUN, {})) >= SCALARS and experiment.get("hparamInfos"):
                    return url
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
        time.sleep(0.25)
    pytest.fail(f"tensorboard did not serve the run within {STARTUP_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[str]:
    """`tensorboard --logdir RUN_DIR` on a port the OS picks (`--port 0`; the URL it prints says which)."""
    assert TENSORBOARD.is_file(), f"no tensorboard executable beside {sys.executable}"
    log = run_dir.parent / "tensorboard.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(TENSORBOARD), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        yield wait_for_server(proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_runs_and_scalar_tags(server: str) -> None:
    assert request(f"{server}/data/runs") == request(f"{server}/experiment/{EXPERIMENT}/data/runs") == [RUN]
    assert set(request(f"{server}/data/plugin/scalars/tags")[RUN]) >= SCALARS
    assert "scalars" in request(f"{server}/data/plugins_listing")


@pytest.mark.parametrize("tag", ["train/loss", "test/error"])
def test_scalar_series_are_the_runs_metrics(server: str, run_dir: Path, tag: str) -> None:
    expected = [(m["iteration"], m[tag]) for m in metrics(run_dir)]
    assert [step for step, _ in expected] == [5, 10]
    query = urllib.parse.urlencode({"run": RUN, "tag": tag})
    series = request(f"{server}/data/plugin/scalars/scalars?{query}")  # [[wall_time, step, value], ...]
    assert [(step, pytest.approx(value)) for _, step, value in series] == expected
    # The Time Series dashboard (TensorBoard's default page) reads the same points through its own endpoint.
    form = urllib.parse.urlencode({"requests": json.dumps([{"plugin": "scalars", "tag": tag}])}).encode()
    [answer] = request(f"{server}/experiment/{EXPERIMENT}/data/plugin/timeseries/timeSeries", form,
                       "application/x-www-form-urlencoded")
    assert [(p["step"], pytest.approx(p["value"])) for p in answer["runToSeries"][RUN]] == expected


def test_hparams_experiment_lists_the_runs_hparams_and_metrics(server: str) -> None:
    experiment = post_json(f"{server}/experiment/{EXPERIMENT}/data/plugin/hparams/experiment",
                           {"experimentName": EXPERIMENT})
    types = {info["name"]: info["type"] for info in experiment["hparamInfos"]}
    assert {"model", "depth", "residual", "shortcut", "block", "data", "lr", "max_iters", "seed"} <= set(types)
    assert types["model"] == "DATA_TYPE_STRING" and types["depth"] == types["lr"] == "DATA_TYPE_FLOAT64"
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == {"test/error", "train/error"}
    # The path without the experiment prefix serves the same; a body TensorBoard cannot read is a 400.
    assert post_json(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""}) == experiment
    with pytest.raises(urllib.error.HTTPError) as error:
        request(f"{server}/data/plugin/hparams/experiment", b"experimentName=", "application/x-www-form-urlencoded")
    assert error.value.code == 400


def test_hparams_table_shows_the_runs_values_and_final_errors(server: str, run_dir: Path) -> None:
    """The rows of the hparams table (and of the Time Series runs table), requested as the frontend does."""
    experiment = post_json(f"{server}/experiment/{EXPERIMENT}/data/plugin/hparams/experiment",
                           {"experimentName": EXPERIMENT})
    columns = [{"hparam": info["name"], "includeInResult": True} for info in experiment["hparamInfos"]]
    columns += [{"metric": info["name"], "includeInResult": True} for info in experiment["metricInfos"]]
    groups = post_json(f"{server}/experiment/{EXPERIMENT}/data/plugin/hparams/session_groups", {
        "experimentName": EXPERIMENT,
        "allowedStatuses": ["STATUS_FAILURE", "STATUS_RUNNING", "STATUS_SUCCESS", "STATUS_UNKNOWN"],
        "colParams": columns, "startIndex": 0, "sliceSize": 1_000_000,
    })
    [group] = groups["sessionGroups"]
    [session] = group["sessions"]
    assert session["name"] == RUN
    summary = json.loads((run_dir / "summary.json").read_text())
    hparams = group["hparams"]
    assert hparams["model"] == summary["model"] == "resnet8"
    assert hparams["depth"] == summary["depth"] == 8
    assert hparams["lr"] == pytest.approx(summary["lr"]) == pytest.approx(0.05)
    assert hparams["shortcut"] == "A" and hparams["data"] == "synthetic"
    # torch.utils.tensorboard.summary.hparams tests int before bool, so booleans reach TensorBoard as numbers:
    # the table shows residual 1 (true) or 0 (false).
    assert hparams["residual"] == 1
    last = metrics(run_dir)[-1]
    shown = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in session["metricValues"]}
    assert shown == {tag: (10, pytest.approx(last[tag])) for tag in ("test/error", "train/error")}
