"""The nemesis, short (README "What the cluster promises under faults"; the long runs are
bench/nemesis): three nodes behind HAProxy, paho devices (3.1.1 and 5.0, QoS 1 and 2,
persistent sessions) and persistent subscribers, and one fault of every kind from a seeded
schedule (STARLING_NEMESIS_SEED, printed with the result). STARLING_NEMESIS_LOGS names a
directory that keeps every node incarnation's log.

Asserted here: every kind of fault was injected and healed by itself (every node ready, linked
and UP in HAProxy again), every acknowledged reading is in `messages`, none is stored twice,
every spool drained. The subscribers' side (each acknowledged reading delivered, QoS 2 exactly
once) is measured and printed; bench/nemesis's long runs still find gaps and QoS 2 repeats
there (BENCHMARKS.md), so it is not asserted yet."""
import os

from nemesis import KINDS, SINGLE_KINDS, Nemesis, schedule


def test_every_fault_kind_heals_and_loses_or_duplicates_no_reading():
    seed = int(os.environ.get("STARLING_NEMESIS_SEED", "20261206"))
    faults = schedule(seed, len(KINDS))
    nemesis = Nemesis(nodes=3, devices=4, interval=0.02, keep_logs=os.environ.get("STARLING_NEMESIS_LOGS"))
    try:
        result = nemesis.run(faults, seed=seed)
    finally:
        nemesis.stop()
    print(seed, result)
    assert set(result["faults_by_kind"]) == set(KINDS)
    assert result["acknowledged"] > 0
    assert result["lost"] == 0, (seed, result["examples"])
    assert result["duplicate_rows"] == 0 and result["unknown_rows"] == 0, (seed, result["examples"])


def test_the_fallback_alone_loses_or_duplicates_no_reading():
    """One node on PostgreSQL without a cluster: outages, PostgreSQL restarts and kills (one
    in the middle of a replay) against its SQLite spool; the same checker."""
    seed = int(os.environ.get("STARLING_NEMESIS_SEED", "20261206"))
    faults = schedule(seed, 2 * len(SINGLE_KINDS), kinds=SINGLE_KINDS, nodes=1)
    nemesis = Nemesis(devices=4, interval=0.02, keep_logs=os.environ.get("STARLING_NEMESIS_LOGS"), single=True)
    try:
        result = nemesis.run(faults, seed=seed)
    finally:
        nemesis.stop()
    print(seed, result)
    assert set(result["faults_by_kind"]) == set(SINGLE_KINDS)
    assert result["acknowledged"] > 0
    assert result["lost"] == 0, (seed, result["examples"])
    assert result["duplicate_rows"] == 0 and result["unknown_rows"] == 0, (seed, result["examples"])
    assert result["subscriber_gaps"] == {"qos1": 0, "qos2": 0}, (seed, result["examples"])
    assert result["qos2_delivered_twice"] == 0, (seed, result["examples"])
