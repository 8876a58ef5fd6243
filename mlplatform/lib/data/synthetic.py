"""Synthetic penguins: any number of rows with the bundled example's schema, for benchmarks and scale tests.

Per-species means and spreads, island mix and missing-value rate follow the real data, so a model trained
on it behaves like one trained on the example (the measurements are drawn independently per species, so
it is somewhat easier than the real thing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPECIES_SHARE = {"Adelie": 0.44, "Gentoo": 0.36, "Chinstrap": 0.20}
ISLANDS = {
    "Adelie": {"Biscoe": 0.29, "Dream": 0.37, "Torgersen": 0.34},
    "Gentoo": {"Biscoe": 1.0},
    "Chinstrap": {"Dream": 1.0},
}
MEASUREMENTS = {  # column: {species: (mean, standard deviation)}
    "bill_length_mm": {"Adelie": (38.8, 2.7), "Chinstrap": (48.8, 3.3), "Gentoo": (47.5, 3.1)},
    "bill_depth_mm": {"Adelie": (18.3, 1.2), "Chinstrap": (18.4, 1.1), "Gentoo": (15.0, 1.0)},
    "flipper_length_mm": {"Adelie": (190.0, 6.5), "Chinstrap": (195.8, 7.1), "Gentoo": (217.2, 6.5)},
    "body_mass_g": {"Adelie": (3700.7, 458.6), "Chinstrap": (3733.1, 384.3), "Gentoo": (5076.0, 504.1)},
}
MISSING_SHARE = {
    "bill_length_mm": 0.006,
    "bill_depth_mm": 0.006,
    "flipper_length_mm": 0.006,
    "body_mass_g": 0.006,
    "sex": 0.03,
}


def penguins(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` synthetic penguins, in the columns and dtypes of ``examples/penguins.csv``."""
    rng = np.random.default_rng(seed)
    names = np.array(list(SPECIES_SHARE))
    species = rng.choice(names, size=rows, p=list(SPECIES_SHARE.values()))
    island = np.empty(rows, dtype=object)
    frame = {"species": species, "island": island}
    for name in names:
        chosen = species == name
        options = ISLANDS[name]
        island[chosen] = rng.choice(list(options), size=int(chosen.sum()), p=list(options.values()))
    for column, by_species in MEASUREMENTS.items():
        values = np.empty(rows)
        for name, (mean, spread) in by_species.items():
            chosen = species == name
            values[chosen] = rng.normal(mean, spread, size=int(chosen.sum()))
        frame[column] = values.round(1) if column != "body_mass_g" else values.round(-1)
    frame["sex"] = rng.choice(np.array(["male", "female"], dtype=object), size=rows)
    frame["year"] = rng.choice([2007, 2008, 2009], size=rows)
    result = pd.DataFrame(frame)
    for column, share in MISSING_SHARE.items():
        result.loc[rng.random(rows) < share, column] = np.nan
    return result
