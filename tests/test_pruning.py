"""The pruning rules against hand computation, and whom a population's pruner compares each trial with."""

from __future__ import annotations

import pytest

from trainlab.pruning import (
    JudgedTrial,
    PopulationPruner,
    PrunedSearch,
    hopeless,
    judged_at,
    score,
)


def test_score_is_the_best_finite_value_up_to_the_epoch() -> None:
    curve = {0: 0.4, 1: 0.7, 2: float("nan"), 3: 0.6, 4: 0.9}
    assert score(curve, 3, maximize=True) == 0.7
    assert score(curve, 3, maximize=False) == 0.4
    assert score({0: float("inf")}, 0, maximize=False) is None


def test_median_rule_by_hand() -> None:
    # Peers 0.5, 0.6, 0.9: median 0.6. Strictly worse stops; equal to the median goes on.
    assert hopeless("median", 0.55, [0.5, 0.6, 0.9], maximize=True)
    assert not hopeless("median", 0.6, [0.5, 0.6, 0.9], maximize=True)
    # Four peers: median (0.5 + 0.6) / 2 = 0.55.
    assert hopeless("median", 0.54, [0.4, 0.5, 0.6, 0.9], maximize=True)
    assert not hopeless("median", 0.56, [0.4, 0.5, 0.6, 0.9], maximize=True)
    # A loss: lower is better; median 2.0.
    assert hopeless("median", 2.1, [1.0, 2.0, 3.0], maximize=False)
    assert not hopeless("median", 1.9, [1.0, 2.0, 3.0], maximize=False)
    # One peer is too few to judge.
    assert not hopeless("median", 0.1, [0.9], maximize=True)


def test_successive_halving_keeps_the_best_third_by_hand() -> None:
    # Itself and five peers: six trials, the best ceil(6 / 3) = 2 go on.
    peers = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert not hopeless("successive_halving", 0.85, peers, maximize=True)  # second of six
    assert hopeless("successive_halving", 0.75, peers, maximize=True)  # third of six
    # Itself and two peers: the best ceil(3 / 3) = 1 goes on; ties are not beaten.
    assert hopeless("successive_halving", 0.5, [0.6, 0.4], maximize=True)
    assert not hopeless("successive_halving", 0.6, [0.6, 0.4], maximize=True)


@pytest.mark.parametrize(
    ("kind", "warmup", "epochs"),
    [
        ("median", 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ("median", 3, [3, 4, 5, 6, 7, 8, 9, 10]),
        ("successive_halving", 0, [1, 3, 9]),
        ("successive_halving", 1, [1, 3, 9]),
        ("successive_halving", 2, [2, 6]),
    ],
)
def test_the_epochs_a_rule_judges(kind: str, warmup: int, epochs: list[int]) -> None:
    assert [e for e in range(11) if judged_at(kind, warmup, e)] == epochs


def search(stage: str, kind: str = "median") -> PrunedSearch:
    return PrunedSearch(stage, kind, 1, "val_accuracy", True, ())


def test_a_population_is_judged_on_the_whole_epoch_in_any_order() -> None:
    s = search("lr")
    judged = {
        h: JudgedTrial(s, {"earlier": {0: 0.3, 1: 0.6, 2: 0.8}}, tuple(o for o in "abc" if o != h)) for h in "abc"
    }
    logs = {"a": {"val_accuracy": 0.34}, "b": {"val_accuracy": 0.7}, "c": {"val_accuracy": 0.5}}

    def run(order: str) -> list[set[str]]:
        pruner = PopulationPruner(judged, {})
        first = pruner.decide(0, {h: {"val_accuracy": 0.33} for h in order})
        return [first, pruner.decide(1, {h: logs[h] for h in order})]

    # Epoch 0 is the warm-up. At epoch 1, a's peers score 0.6, 0.7, 0.5 (median 0.6): a stops;
    # b is above its peers' median 0.55; c (peers 0.6, 0.34, 0.7: median 0.6) stops.
    assert run("abc") == [set(), {"a", "c"}]
    assert run("cba") == run("abc") == run("bca")


def test_a_pruner_compares_a_trial_only_with_the_peers_it_is_given() -> None:
    fast, slow = search("fast"), search("slow")
    judged = {
        "s1": JudgedTrial(slow, {}, ("s2", "s3")),
        "s2": JudgedTrial(slow, {}, ("s1", "s3")),
        "s3": JudgedTrial(slow, {}, ("s1", "s2")),
        "f1": JudgedTrial(fast, {}, ()),
    }
    pruner = PopulationPruner(judged, {})
    assert pruner.peers("s1") == ["s2", "s3"] and pruner.peers("f1") == []
    values = {"s1": 0.34, "s2": 0.34, "s3": 0.34, "f1": 0.95}
    pruner.decide(0, {h: {"val_accuracy": v} for h, v in values.items()})
    # Beside f1 (and a second fast trial) every slow trial would be behind the median; among
    # themselves, none is strictly below it.
    assert hopeless("median", 0.34, [0.34, 0.34, 0.95, 0.95], maximize=True)
    assert pruner.decide(1, {h: {"val_accuracy": v} for h, v in values.items()}) == set()
