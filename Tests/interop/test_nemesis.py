"""The nemesis, short (README "What the cluster promises under faults"; the long runs are
bench/nemesis): three nodes behind HAProxy, paho devices (3.1.1 and 5.0, QoS 1 and 2,
persistent sessions) and persistent subscribers, and one fault of every kind from a seeded
schedule (STARLING_NEMESIS_SEED, printed with the result). STARLING_NEMESIS_LOGS names a
directory that keeps every node incarnation's log.

Asserted here: every kind of fault was injected and healed by itself (every node ready, linked
and UP in HAProxy again), every acknowledged reading is in `messages`, none is stored twice,
every spool drained. The subscribers' side (each acknowledged reading delivered, QoS 2 exactly
once, no QoS 2 packet id reused while the client holds it) is measured and printed, and asserted
for the fallback alone; bench/nemesis's long runs still find 1-3 QoS 2 repeats in ~450,000
readings across nodes (BENCHMARKS.md), so it is not asserted for the cluster yet."""
import os

from nemesis import KINDS, SINGLE_KINDS, Nemesis, schedule


def run_and_check(kinds, count, **nemesis_args):
    """A seeded schedule of `count` faults of `kinds` (STARLING_NEMESIS_SEED), then what every run
    must show: each kind injected and healed, readings acknowledged, none lost or stored twice."""
    seed = int(os.environ.get("STARLING_NEMESIS_SEED", "20261206"))
    faults = schedule(seed, count, kinds=kinds, nodes=1 if nemesis_args.get("single") else 3)
    nemesis = Nemesis(devices=4, interval=0.02, keep_logs=os.environ.get("STARLING_NEMESIS_LOGS"), **nemesis_args)
    try:
        result = nemesis.run(faults, seed=seed)
    finally:
        nemesis.stop()
    print(seed, result)
    assert set(result["faults_by_kind"]) == set(kinds)
    assert result["acknowledged"] > 0
    assert result["lost"] == 0, (seed, result["examples"])
    assert result["duplicate_rows"] == 0 and result["unknown_rows"] == 0, (seed, result["examples"])
    return seed, result


def test_every_fault_kind_heals_and_loses_or_duplicates_no_reading():
    run_and_check(KINDS, len(KINDS), nodes=3)


def test_the_fallback_alone_loses_or_duplicates_no_reading():
    """One node on PostgreSQL without a cluster: outages, PostgreSQL restarts and kills (one
    in the middle of a replay) against its SQLite spool; the same checker."""
    seed, result = run_and_check(SINGLE_KINDS, 2 * len(SINGLE_KINDS), single=True)
    assert result["subscriber_gaps"] == {"qos1": 0, "qos2": 0}, (seed, result["examples"])
    assert result["qos2_delivered_twice"] == 0, (seed, result["examples"])
