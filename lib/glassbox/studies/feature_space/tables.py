"""The feature-space chapter's tables: Tables II and III beside the paper's, and the clustering summary."""
from __future__ import annotations

import numpy as np
import pandas as pd

from glassbox.measure.stats import holm
from glassbox.studies.feature_space.config import ALPHA, LAYER_ORDER
from glassbox.studies.feature_space.layer_similarity import SVCCA_COLUMNS, paper_table
from glassbox.studies.feature_space.study import FeatureResult
from glassbox.training.unet_grid import (
    PAPER_TABLE2_SVCCA,
    PAPER_TABLE3_COSINE,
    model_label,
)

# --- views ----------------------------------------------------------------------------------------------------


def table2(result: FeatureResult) -> pd.DataFrame:
    """Table II: our SVCCA, its kept dimension k = min(kx, ky), chance at (kx, ky), re-paired chance, the paper."""
    long = result.long.assign(kept_min=np.minimum(result.long["kept_x"], result.long["kept_y"]))
    return paper_table(long, "svcca", PAPER_TABLE2_SVCCA, SVCCA_COLUMNS)


def table3(result: FeatureResult) -> pd.DataFrame:
    """Table III: our cosine, its re-paired chance, the paper's."""
    return paper_table(result.long, "cosine", PAPER_TABLE3_COSINE)


def side_by_side(result: FeatureResult) -> pd.DataFrame:
    """Per layer of the deepest U-Net (random seeding): every metric for the real trials and for the copy."""
    label = model_label(result.deepest, "random")
    order = [l for l in LAYER_ORDER if l in result.channels]
    columns = ["svcca", "pwcca", "linear_cka", "linear_cka_debiased", "matched_cosine", "cosine"]
    real = result.long[result.long["model"] == label].pivot(index="layer", columns="metric", values="value")
    copy = result.control_long.pivot(index="layer", columns="metric", values="value")
    real, copy = real.reindex(index=order, columns=columns), copy.reindex(index=order, columns=columns)
    for side, pair in ((real, label), (copy, "permuted copy")):
        rows = result.clusters[result.clusters["pair"] == pair].set_index("layer")
        side["clustering ARI"] = rows["ari"].reindex(order)
        side["twin NN"] = rows["twin_nn_fraction"].reindex(order)
    return pd.concat({"real trials": real, "permuted copy": copy}, axis=1)


def cluster_summary(result: FeatureResult) -> pd.DataFrame:
    """Per pair of trials (and the copy): mean ARI and twin rate over layers, and in how many layers each is
    significant (Holm over that pair's layers at :data:`ALPHA`)."""
    rows = []
    for pair, part in result.clusters.groupby("pair", sort=False):
        part = part.dropna(subset=["ari"])
        rows.append({"pair": pair, "layers": len(part), "mean ARI": part["ari"].mean(),
                     "layers split by trial": int(holm(part["p_value"].to_numpy(), ALPHA).sum()),
                     "mean twin NN": part["twin_nn_fraction"].mean(), "twin NN chance": part["twin_nn_chance"].mean(),
                     "layers with twins above chance": int(holm(part["twin_nn_p_value"].to_numpy(), ALPHA).sum())})
    return pd.DataFrame(rows).set_index("pair")
