"""A study spread over a simulated multi-node cluster, through the project's own runner.

`ray.cluster_utils.Cluster` starts a head and two worker nodes on this machine. As in
cluster/gcp.yaml the head has no CPUs, so it takes no trials. Each worker has one unit of a custom
resource `fake_gpu` standing in for a GPU and four CPUs; trials ask for one CPU and 0.5 fake GPU
(the `{"gpu": 0.5}` of a real cluster), so only the fake GPU limits a node to two trials at once.

Where and when each trial ran comes from Ray's own record of the trial actors (the GCS actor table:
node, pid, start and end), joined to the results through the `pid` Tune reports with every result;
when the trials report `node_id` themselves, the two must agree.

The study runs in a subprocess (this file run as a script) so that its Ray cluster cannot meet a
Ray session that another test of the same pytest run keeps open.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

WORKERS = 2
WORKER_CPUS = 4
FAKE_GPUS_PER_WORKER = 1.0
FAKE_GPU_PER_TRIAL = 0.5
TRIALS = 4
CONCURRENT = 4  # all at once: more than one node can hold, so the study must spread


def run_study_on_simulated_cluster(out: Path, storage: Path) -> None:
    """Start the cluster, run the study with nisca's runner, write what happened to `out` (JSON)."""
    from nisca.tune.environment import quiet_environment

    quiet_environment()  # before Ray is imported
    import ray
    import ray._private.state
    from ray.cluster_utils import Cluster

    from nisca.tune.runner import run_study
    from nisca.tune.spec import StudySpec

    started = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [
        cluster.add_node(num_cpus=WORKER_CPUS, resources={"fake_gpu": FAKE_GPUS_PER_WORKER}) for _ in range(WORKERS)
    ]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="warning")
    cluster_up = time.time() - started
    try:
        spec = StudySpec(
            name="multinode",
            scenes={"tiny": {"synthetic": {"channels": 8, "latent_dim": 3, "samples": 240, "snr_db": 30, "seed": 0}}},
            methods={"nisca": {"nonlinearity_hidden": 8, "encoder_hidden": (16,), "batch_size": 64, "patience": 1000}},
            searcher="grid",
            scheduler="none",
            num_samples=1,
            seeds=tuple(range(TRIALS)),
            max_epochs=60,  # a few seconds per trial: longer than starting a trial process
            max_concurrent_trials=CONCURRENT,
            resources={"cpu": 1, "fake_gpu": FAKE_GPU_PER_TRIAL},
            max_failures=0,
        )
        study_started = time.time()
        results = run_study(spec, storage=str(storage), verbose=0, echo=lambda line: None)
        study_ended = time.time()
        trials = [
            {
                "trial_id": result.metrics.get("trial_id"),
                "pid": result.metrics.get("pid"),
                "node_id": result.metrics.get("node_id"),
                "completed": result.metrics.get("completed"),
                "seconds": result.metrics.get("time_total_s"),
                "error": None if result.error is None else repr(result.error),
            }
            for result in results
        ]
        actors = [
            {
                "pid": actor["Pid"],
                "node_id": actor["Address"]["NodeID"],
                "start_ms": actor["StartTime"],
                "end_ms": actor["EndTime"] or int(time.time() * 1000),
                "class": actor["ActorClassName"],
                "state": actor["State"],
            }
            for actor in ray._private.state.actors().values()
        ]
        record = {
            "head": cluster.head_node.node_id,
            "workers": [node.node_id for node in workers],
            "trials": trials,
            "actors": actors,
            "cluster_up_s": cluster_up,
            "study_ms": [int(study_started * 1000), int(study_ended * 1000)],
            "total_s": time.time() - started,
        }
        out.write_text(json.dumps(record, indent=1))
    finally:
        ray.shutdown()
        cluster.shutdown()


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    """The largest number of intervals [start, end) that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start (+1)
        running += change
        peak = max(peak, running)
    return peak


def test_most_at_once_counts_overlaps():
    assert most_at_once([(0, 10), (5, 15), (10, 20)]) == 2
    assert most_at_once([(0, 10), (1, 9), (2, 8)]) == 3
    assert most_at_once([(0, 1), (1, 2)]) == 1


@pytest.mark.slow
def test_study_spreads_over_nodes_within_their_fake_gpus(tmp_path):
    out, storage = tmp_path / "record.json", tmp_path / "studies"
    # A short RAY_TMPDIR: Ray's socket paths must stay under the Unix limit of 107 characters.
    ray_tmp = tempfile.mkdtemp(prefix="nisca-ray-", dir="/tmp")
    home = tmp_path / "home"  # Ray keeps its auth token under ~/.ray: not in the user's home
    home.mkdir()
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, HOME=str(home), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        run = subprocess.run(
            [sys.executable, __file__, str(out), str(storage)], env=env, capture_output=True, text=True, timeout=240
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-4000:]
    record = json.loads(out.read_text())
    seconds = ", ".join(f"{t['seconds']:.1f}" for t in record["trials"])
    print(f"cluster up in {record['cluster_up_s']:.1f} s, study done after {record['total_s']:.1f} s")
    print(f"trials took {seconds} s")

    trials = record["trials"]
    assert len(trials) == TRIALS
    assert all(t["error"] is None and t["completed"] == 1 for t in trials), trials

    # Where each trial ran: its actor (Tune reuses a finished trial's actor, so one pid may run several).
    by_pid = {actor["pid"]: actor for actor in record["actors"]}
    assert all(t["pid"] in by_pid for t in trials), "a trial's process is missing from Ray's actor table"
    trial_nodes = {by_pid[t["pid"]]["node_id"] for t in trials}
    assert record["head"] not in trial_nodes, "a trial ran on the head"
    assert trial_nodes == set(record["workers"]), "the trials did not spread over both workers"
    for trial in trials:
        if trial["node_id"] is not None:  # the trainable's own record, where it reports one
            assert trial["node_id"] == by_pid[trial["pid"]]["node_id"]

    # How many trial processes each node held at once (a trial process holds its trial's resources
    # from start to end, and with actor reuse runs one trial after another): never more than the
    # node's fake GPUs allow, and the fraction was used (two trials shared one fake GPU).
    trial_class = by_pid[trials[0]["pid"]]["class"]
    started = [a for a in record["actors"] if a["class"] == trial_class and a["start_ms"] > 0]
    capacity = int(FAKE_GPUS_PER_WORKER / FAKE_GPU_PER_TRIAL)
    peaks = {
        node: most_at_once([(a["start_ms"], a["end_ms"]) for a in started if a["node_id"] == node])
        for node in record["workers"]
    }
    assert all(peak <= capacity for peak in peaks.values()), peaks
    assert max(peaks.values()) == capacity, peaks


if __name__ == "__main__":
    run_study_on_simulated_cluster(Path(sys.argv[1]), Path(sys.argv[2]))
