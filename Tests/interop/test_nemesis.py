"""The nemesis, short (README "What the cluster promises under faults"; the long runs are
bench/nemesis): three nodes behind HAProxy, paho devices (3.1.1 and 5.0, QoS 1 and 2,
persistent sessions) and persistent subscribers, and one fault of every kind from a seeded
schedule (STARLING_NEMESIS_SEED, printed). Every acknowledged reading is stored exactly once,
nothing is stored twice, the subscribers miss nothing (QoS 2 exactly once), every spool drains."""
import os

from nemesis import KINDS, Nemesis, problems, schedule


def test_every_fault_kind_once_loses_and_duplicates_nothing():
    seed = int(os.environ.get("STARLING_NEMESIS_SEED", "20261206"))
    faults = schedule(seed, len(KINDS))
    nemesis = Nemesis(nodes=3, devices=4, interval=0.02)
    try:
        result = nemesis.run(faults, seed=seed)
    finally:
        nemesis.stop()
    print(result)
    assert set(result["faults_by_kind"]) == set(KINDS)
    assert result["acknowledged"] > 0
    assert not problems(result), (seed, result)
