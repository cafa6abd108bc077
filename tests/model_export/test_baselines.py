import random

from model_export.baselines.popular import MostPopular
from model_export.baselines.sasrec import SASRec, SASRecConfig
from model_export.data.splits import temporal_split
from r2ec.catalog import Catalog, Event, Item
from r2ec.metrics import summarize


def _cyclic_world(n_items=30, users=60, length=15, seed=0):
    """Each user walks the catalog in order (item i is followed by item i+1): learnable, unlike popularity."""
    rng = random.Random(seed)
    catalog = Catalog([Item(str(i), f"Item {i}") for i in range(n_items)])
    timelines = {}
    for u in range(users):
        start = rng.randrange(n_items)
        t0 = rng.uniform(0, 1e6)
        timelines[f"u{u}"] = [Event(str((start + j) % n_items), t0 + j * 1000.0) for j in range(length)]
    return catalog, timelines


def test_mostpopular_counts_only_training_events():
    catalog = Catalog([Item("a", "A"), Item("b", "B"), Item("c", "C")])
    timelines = {"u1": [Event("a", 1), Event("b", 2), Event("c", 100)], "u2": [Event("a", 3), Event("c", 4)]}
    splits = temporal_split(timelines, fractions=(0.5, 0.0))
    pop = MostPopular(catalog).fit(timelines, splits)
    assert pop.counts.tolist() == [2, 1, 1]  # train targets b@2, c@4 plus their prefixes; c@100 unseen


def test_sasrec_learns_a_sequential_rule():
    catalog, timelines = _cyclic_world()
    splits = temporal_split(timelines)
    model = SASRec(catalog, SASRecConfig(epochs=40, patience=40, dim=32), window=20).fit(
        timelines, splits, splits["valid"], progress=False
    )
    sas = summarize(model.ranks(splits["test"]))
    pop = MostPopular(catalog).fit(timelines, splits)
    mp = summarize([pop.rank(s) for s in splits["test"]])
    assert sas["ndcg@10"] > 0.5 > mp["ndcg@10"]
