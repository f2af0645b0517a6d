"""Clustering of the two trials' features, with a permuted-copy control."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from glassbox.measure import clustering
from glassbox.measure import similarity as sim
from glassbox.training.unet_grid import (
    QuConfig,
)

# --- clustering --------------------------------------------------------------------------------------------


def permuted_copy(feats: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each layer's features with their channels shuffled (seeded): the same information as the input,
    so every permutation-invariant similarity is exactly 1 -- the control for cosine and clustering."""
    rng = np.random.default_rng(seed)
    return {layer: x[:, rng.permutation(x.shape[1])] for layer, x in feats.items()}


def clustering_table(pairs_of_features: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                     config: QuConfig, *, seed: int = 0) -> pd.DataFrame:
    """:func:`glassbox.measure.clustering.cluster_trials` for every ``{name: (trial-1 features, trial-2 features)}``
    and layer, on the same ``cluster_samples`` images per trial: ARI of the 2-cluster cut vs the trial
    labels and its p-value, how often a sample's nearest neighbour is its twin (chance, p-value)."""
    rows = []
    for name, (f1, f2) in pairs_of_features.items():
        for layer in f1:
            n = f1[layer].shape[0]
            idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, config.cluster_samples), replace=False))
            try:
                result = clustering.cluster_trials(f1[layer][idx], f2[layer][idx],
                                                   n_permutations=config.cluster_permutations, seed=seed)
            except sim.SimilarityInputError as exc:
                rows.append({"pair": name, "layer": layer, "ari": math.nan, "p_value": math.nan,
                             "twin_nn_fraction": math.nan, "twin_nn_chance": math.nan, "twin_nn_p_value": math.nan,
                             "note": str(exc)})
                continue
            rows.append({"pair": name, "layer": layer, "ari": result.ari, "p_value": result.p_value,
                         "twin_nn_fraction": result.twin_nn_fraction, "twin_nn_chance": result.twin_nn_chance,
                         "twin_nn_p_value": result.twin_nn_p_value,
                         "cluster_sizes": f"{result.cluster_sizes[0]}/{result.cluster_sizes[1]}", "note": ""})
    return pd.DataFrame(rows)
