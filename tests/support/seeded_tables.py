"""The published training set's 13 columns built in memory from the seeder (what the Glue job's join
computes), for unit tests of the trainer that need no service."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa

from recsys.contracts import TRAINING_COLUMNS
from recsys.pipeline.dataset import arrow_type
from recsys_seed.generate import SeedData

CUSTOMER_COLUMNS = {"city": 7, "state": 8, "postalCode": 9, "country": 10, "creditLimit": 12}  # customers row
PRODUCT_COLUMNS = {
    "productCode": 0,
    "productLine": 2,
    "productScale": 3,
    "quantityInStock": 6,
    "buyPrice": 7,
    "MSRP": 8,
}  # products row


def training_table(seeded: SeedData) -> pa.Table:
    """One row per rating, in (customerNumber, productCode) order, typed as the contract says."""
    customer_row = seeded.ratings_customer - seeded.customers[0][0]
    order = np.lexsort((seeded.truth.product_codes[seeded.ratings_product], customer_row))
    customers = [seeded.customers[i] for i in customer_row[order]]
    products = [seeded.products[j] for j in seeded.ratings_product[order]]
    columns = {"customerNumber": [c[0] for c in customers], "productRating": seeded.ratings_value[order].tolist()}
    columns |= {name: [c[i] for c in customers] for name, i in CUSTOMER_COLUMNS.items()}
    columns |= {name: [p[i] for p in products] for name, i in PRODUCT_COLUMNS.items()}
    decimals = {"creditLimit", "buyPrice", "MSRP"}
    schema = pa.schema([(name, arrow_type(kind)) for name, kind in TRAINING_COLUMNS])
    return pa.table(
        [
            pa.array([Decimal(v) for v in columns[f.name]] if f.name in decimals else columns[f.name], type=f.type)
            for f in schema
        ],
        schema=schema,
    )
