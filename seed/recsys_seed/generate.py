"""Deterministic, classicmodels-shaped data with planted taste structure.

Everything is drawn from one ``numpy`` generator seeded by ``SeedSpec.seed``; Faker (slow) only
builds small name pools once, seeded too. The same spec gives identical rows.

Planted model: a customer's affinity for a product is ``user_features @ item_features.T`` where
the features concatenate (a) hidden item factors, (b) taste over the seven product lines,
(c) taste over vendors, and (d) long-tailed item popularity. A customer rates the products with
the highest affinity plus Gumbel noise (a softmax sample without replacement); the rating value
grows with affinity, plus noise. ``PlantedTruth`` holds those features, so evaluation can rank
held-out products by the true affinity: the best any model can do.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

GENERATOR_VERSION = "planted-v1"
FIRST_CUSTOMER_NUMBER = 103  # as in classicmodels

PRODUCT_LINES = {
    "Classic Cars": "Attention car enthusiasts: make your wildest car ownership dreams come true.",
    "Motorcycles": "Our motorcycles are state of the art replicas of classic as well as contemporary models.",
    "Planes": "Unique, diecast airplane and helicopter replicas suitable for collections and gifts.",
    "Ships": "The perfect holiday or anniversary gift for executives, clients, friends, and family.",
    "Trains": "Model trains are a rewarding hobby for enthusiasts of all ages.",
    "Trucks and Buses": "The Truck and Bus models are realistic replicas of buses and specialized trucks.",
    "Vintage Cars": "Our Vintage Car models realistically portray automobiles produced from the early 1900s.",
}
LINE_SUBJECTS = {
    "Classic Cars": ["Ferrari Dino", "Chevrolet Corvette", "Ford Mustang", "Porsche 356", "Jaguar E-type",
                     "Alpine Renault", "Mercedes-Benz SL", "Aston Martin DB5", "Dodge Charger", "Pontiac GTO"],
    "Motorcycles": ["Harley Davidson Chopper", "Ducati 900", "Honda CB750", "BMW R75", "Triumph Bonneville",
                    "Indian Chief", "Yamaha YZR", "Suzuki XREO", "Moto Guzzi V7", "Norton Commando"],
    "Planes": ["Spitfire", "P-51 Mustang", "Boeing 767", "Douglas DC-3", "Concorde", "Fokker Triplane",
               "Lockheed Constellation", "Piper J-3 Cub", "F/A-18 Hornet", "Sopwith Camel"],
    "Ships": ["Titanic", "HMS Bounty", "Queen Mary", "USS Constitution", "Mayflower", "Cutty Sark",
              "Pont Yacht", "Santa Maria", "Bismarck", "Andrea Doria"],
    "Trains": ["Collectable Wooden Train", "Flying Scotsman", "Orient Express", "Union Pacific Big Boy",
               "Mallard", "Shinkansen 0", "Pennsylvania GG1", "Rocket", "Royal Scot", "Santa Fe Chief"],
    "Trucks and Buses": ["Ford F-150", "Volkswagen Transporter", "Mack Tanker", "Greyhound Scenicruiser",
                         "Peterbilt 379", "Dodge Power Wagon", "Routemaster", "Chevy Pickup", "Kenworth W900",
                         "Diamond T620"],
    "Vintage Cars": ["Ford Model T", "Bugatti Royale", "Rolls-Royce Silver Ghost", "Duesenberg SJ",
                     "Packard Twelve", "Cadillac V16", "Mercedes-Benz SSK", "Hispano-Suiza", "Bentley Blower",
                     "Stutz Bearcat"],
}
LINE_YEARS = {"Classic Cars": (1948, 2005), "Motorcycles": (1936, 2003), "Planes": (1917, 1985),
              "Ships": (1492, 1960), "Trains": (1829, 1964), "Trucks and Buses": (1926, 1996),
              "Vintage Cars": (1903, 1940)}
SCALES = ["1:10", "1:12", "1:18", "1:24", "1:32", "1:50", "1:72", "1:700"]
VENDORS = ["Min Lin Diecast", "Classic Metal Creations", "Highway 66 Mini Classics", "Red Start Diecast",
           "Motor City Art Classics", "Second Gear Diecast", "Autoart Studio Design", "Welly Diecast Productions",
           "Unimax Art Galleries", "Studio M Art Models", "Exoto Designs", "Gearbox Collectibles",
           "Carousel DieCast Legends"]
# (city, state or None, postal code pattern ('#' = digit) or None, country): consistent by construction.
LOCATIONS = [
    ("Nantes", None, "440##", "France"), ("Paris", None, "750##", "France"), ("Lyon", None, "690##", "France"),
    ("Marseille", None, "130##", "France"), ("Strasbourg", None, "670##", "France"),
    ("Las Vegas", "NV", "891##", "USA"), ("San Francisco", "CA", "941##", "USA"), ("NYC", "NY", "100##", "USA"),
    ("Boston", "MA", "021##", "USA"), ("Philadelphia", "PA", "191##", "USA"), ("Allentown", "PA", "181##", "USA"),
    ("New Haven", "CT", "065##", "USA"), ("Glendale", "CA", "912##", "USA"), ("Cambridge", "MA", "021##", "USA"),
    ("Melbourne", "Victoria", "30##", "Australia"), ("Sydney", "NSW", "20##", "Australia"),
    ("Madrid", None, "280##", "Spain"), ("Barcelona", None, "080##", "Spain"), ("Sevilla", None, "410##", "Spain"),
    ("Frankfurt", None, "603##", "Germany"), ("München", None, "80###", "Germany"), ("Köln", None, "50###", "Germany"),
    ("London", None, "WX1 #AA", "UK"), ("Manchester", None, "M# #AA", "UK"), ("Liverpool", None, "L# #AA", "UK"),
    ("Tokyo", "Tokyo", "106-00##", "Japan"), ("Osaka", "Osaka", "530-00##", "Japan"),
    ("Torino", None, "101##", "Italy"), ("Milan", None, "201##", "Italy"), ("Bergamo", None, "241##", "Italy"),
    ("Helsinki", None, "00###", "Finland"), ("Oulu", None, "90###", "Finland"),
    ("Oslo", None, "0###", "Norway"), ("Stavern", None, "32##", "Norway"),
    ("Singapore", None, "0795##", "Singapore"), ("Vancouver", "BC", "V6B #A#", "Canada"),
    ("Montréal", "Québec", "H1J #A#", "Canada"), ("Auckland", None, "10##", "New Zealand"),
    ("Wellington", None, "60##", "New Zealand"), ("Luleå", None, "958 ##", "Sweden"),
    ("Kobenhavn", None, "1###", "Denmark"), ("Bruxelles", None, "10##", "Belgium"),
    ("Genève", None, "12##", "Switzerland"), ("Dublin", None, None, "Ireland"), ("Salzburg", None, "50##", "Austria"),
    ("Makati City", None, "12##", "Philippines"), ("Central Hong Kong", None, None, "Hong Kong"),
    ("Saint Petersburg", None, "1970##", "Russia"), ("Warszawa", None, "01-0##", "Poland"),
    ("Herzlia", None, "467##", "Israel"), ("Johannesburg", None, "20##", "South Africa"),
]
SALES_REPS = [1165, 1166, 1188, 1216, 1286, 1323, 1337, 1370, 1401, 1501, 1504, 1611, 1612, 1621, 1702]
COMPANY_SUFFIXES = ["Co.", "Ltd.", "Inc.", "Gifts", "Collectables", "Imports", "Replicas", "Models",
                    "Souveniers", "Diecast Classics", "Auto Parts", "Mini Wheels Co.", "& Co"]

HIDDEN_FACTORS = 8
LINE_WEIGHT, VENDOR_WEIGHT, HIDDEN_WEIGHT, POPULARITY_WEIGHT = 1.6, 0.6, 1.0, 0.8


@dataclass(frozen=True)
class SeedSpec:
    """What to generate. Defaults are the lab's scale."""

    customers: int = 122
    products: int = 110
    ratings: int = 2500
    seed: int = 42

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible argument."""
        for name in ("customers", "products", "ratings"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.customers > 2_000_000_000 - FIRST_CUSTOMER_NUMBER:
            raise ValueError(f"--customers {self.customers} exceeds the INT customerNumber range")
        if self.products > 10_000_000:
            raise ValueError(f"--products {self.products} exceeds the supported 10,000,000")
        pairs = self.customers * self.products
        if self.ratings > pairs:
            raise ValueError(f"--ratings {self.ratings} exceeds customers x products = {pairs} possible pairs")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"--seed must be in 0..2^31-1, got {self.seed}")


@dataclass(frozen=True)
class PlantedTruth:
    """The generating model: ``affinity = user_features @ item_features.T`` (higher = more liked)."""

    customer_numbers: np.ndarray  # (C,)
    product_codes: np.ndarray  # (P,) str
    user_features: np.ndarray  # (C, F) float32
    item_features: np.ndarray  # (P, F) float32
    line_taste: np.ndarray  # (C, 7) probabilities over PRODUCT_LINES order

    def affinity(self, customer_index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """True affinity of the given customers (by row index) for every product."""
        return self.user_features[customer_index] @ self.item_features.T

    @cached_property
    def customer_index(self) -> dict[int, int]:
        return {int(c): i for i, c in enumerate(self.customer_numbers)}


@dataclass
class SeedData:
    """Rows ready to load, in the tables' column order."""

    productlines: list[tuple]
    products: list[tuple]
    customers: list[tuple]
    ratings_customer: np.ndarray  # (R,) int customerNumber, sorted with product index
    ratings_product: np.ndarray  # (R,) int product index into products
    ratings_value: np.ndarray  # (R,) int 1..5
    truth: PlantedTruth


def _faker_pools(seed: int) -> dict[str, list[str]]:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    return {
        "first": [fake.first_name() for _ in range(300)],
        "last": [fake.last_name() for _ in range(300)],
        "street": [fake.street_address() for _ in range(400)],
        "company": [fake.last_name() for _ in range(300)],
    }


def _fill_pattern(pattern: str | None, digits: np.ndarray, letters: np.ndarray) -> str | None:
    if pattern is None:
        return None
    out, d, a = [], iter(digits), iter(letters)
    for ch in pattern:
        out.append(str(next(d)) if ch == "#" else chr(65 + next(a)) if ch == "A" else ch)
    return "".join(out)


def _products(rng: np.random.Generator, n: int) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    lines = list(PRODUCT_LINES)
    line_idx = rng.integers(0, len(lines), n)
    vendor_idx = rng.integers(0, len(VENDORS), n)
    scale_idx = rng.integers(0, len(SCALES), n)
    width = max(4, len(str(n)))
    buy = np.round(rng.uniform(15, 105, n), 2)
    msrp = np.round(buy * rng.uniform(1.35, 2.1, n), 2)
    stock = rng.integers(0, 9_999, n)
    subject_pick = rng.integers(0, 10, n)
    rows = []
    for j in range(n):
        line, scale = lines[line_idx[j]], SCALES[scale_idx[j]]
        # j -> j*7919 mod 10^width is a bijection (7919 is prime), so codes are unique and look scattered
        code = f"S{scale.split(':')[1]}_{(j * 7919 + 1678) % (10 ** width):0{width}d}"
        lo, hi = LINE_YEARS[line]
        year = lo + (j * 31) % (hi - lo + 1)
        name = f"{year} {LINE_SUBJECTS[line][subject_pick[j]]}"
        desc = f"{scale} scale replica of the {name}, by {VENDORS[vendor_idx[j]]}. {PRODUCT_LINES[line]}"
        rows.append((code, name[:70], line, scale, VENDORS[vendor_idx[j]], desc, int(stock[j]),
                     f"{buy[j]:.2f}", f"{msrp[j]:.2f}"))
    return rows, line_idx, vendor_idx


def _customers(rng: np.random.Generator, n: int, pools: dict[str, list[str]]) -> list[tuple]:
    loc_idx = rng.integers(0, len(LOCATIONS), n)
    first = rng.integers(0, len(pools["first"]), n)
    last = rng.integers(0, len(pools["last"]), n)
    company = rng.integers(0, len(pools["company"]), n)
    suffix = rng.integers(0, len(COMPANY_SUFFIXES), n)
    street = rng.integers(0, len(pools["street"]), n)
    has_line2 = rng.random(n) < 0.15
    floor = rng.integers(1, 40, n)
    phone = rng.integers(10_000_000, 99_999_999, n)
    digits = rng.integers(0, 10, (n, 8))
    letters = rng.integers(0, 26, (n, 4))
    rep = rng.integers(0, len(SALES_REPS) + 2, n)  # some customers have no sales rep
    no_credit = rng.random(n) < 0.08
    credit = np.round(rng.lognormal(np.log(75_000), 0.5, n), -2).clip(1_000, 250_000)
    rows = []
    for i in range(n):
        city, state, postal, country = LOCATIONS[loc_idx[i]]
        rows.append((
            FIRST_CUSTOMER_NUMBER + i,
            f"{pools['company'][company[i]]} {COMPANY_SUFFIXES[suffix[i]]}"[:50],
            pools["last"][last[i]], pools["first"][first[i]],
            f"+{10 + loc_idx[i]} {phone[i]}",
            pools["street"][street[i]][:50],
            f"Floor No. {floor[i]}" if has_line2[i] else None,
            city, state, _fill_pattern(postal, digits[i], letters[i]), country,
            SALES_REPS[rep[i]] if rep[i] < len(SALES_REPS) else None,
            "0.00" if no_credit[i] else f"{credit[i]:.2f}",
        ))
    return rows


def _planted_features(rng, n_customers, line_idx, vendor_idx):
    n_products = len(line_idx)
    hidden_u = rng.normal(0, 1 / np.sqrt(HIDDEN_FACTORS), (n_customers, HIDDEN_FACTORS))
    hidden_v = rng.normal(0, 1, (n_products, HIDDEN_FACTORS))
    line_taste = rng.dirichlet(np.full(len(PRODUCT_LINES), 0.4), n_customers)
    vendor_taste = rng.normal(0, 1, (n_customers, len(VENDORS)))
    popularity = rng.normal(0, 1.2, n_products)  # log-popularity: long-tailed counts
    line_onehot = np.eye(len(PRODUCT_LINES))[line_idx]
    vendor_onehot = np.eye(len(VENDORS))[vendor_idx]
    user = np.hstack([
        HIDDEN_WEIGHT * hidden_u,
        LINE_WEIGHT * np.log(line_taste + 1e-3),
        VENDOR_WEIGHT * vendor_taste,
        np.full((n_customers, 1), POPULARITY_WEIGHT),
    ]).astype(np.float32)
    item = np.hstack([hidden_v, line_onehot, vendor_onehot, popularity[:, None]]).astype(np.float32)
    return user, item, line_taste


def _ratings_per_customer(rng, n_customers, n_products, total) -> np.ndarray:
    """Long-tailed activity, each count capped at the catalogue size, summing exactly to ``total``."""
    weights = rng.lognormal(0, 0.8, n_customers)
    counts = np.minimum(np.floor(weights / weights.sum() * total).astype(np.int64), n_products)
    while (short := total - counts.sum()) > 0:
        room = np.flatnonzero(counts < n_products)
        take = rng.choice(room, size=min(short, room.size), replace=False)
        counts[take] += 1
    return counts


@dataclass
class RatingsChunk:
    """Consecutive ratings in primary-key order: customerNumber, product index, stars."""

    customers: np.ndarray
    products: np.ndarray
    stars: np.ndarray


def _rating_chunks(rng, spec: SeedSpec, user, item, counts, codes) -> Iterator[RatingsChunk]:
    code_rank = np.empty(spec.products, dtype=np.int64)
    code_rank[np.argsort(codes)] = np.arange(spec.products)  # rows in primary-key order load fastest
    chunk = max(1, 4_000_000 // spec.products)
    for start in range(0, spec.customers, chunk):
        stop = min(start + chunk, spec.customers)
        affinity = user[start:stop] @ item.T
        noisy = affinity + rng.gumbel(size=affinity.shape).astype(np.float32)
        cust_out, prod_out, val_out = [], [], []
        for row in range(stop - start):
            k = counts[start + row]
            if k == 0:
                continue
            picked = np.argpartition(-noisy[row], k - 1)[:k] if k < spec.products else np.arange(spec.products)
            picked = picked[np.argsort(code_rank[picked])]
            liked = affinity[row, picked]
            z = (liked - liked.mean()) / (liked.std() + 1e-6)  # relative to what this customer rated
            stars = np.clip(np.rint(3.4 + 1.1 * z + rng.normal(0, 0.7, k)), 1, 5)
            cust_out.append(np.full(k, FIRST_CUSTOMER_NUMBER + start + row, dtype=np.int64))
            prod_out.append(picked)
            val_out.append(stars.astype(np.int8))
        if cust_out:
            yield RatingsChunk(np.concatenate(cust_out), np.concatenate(prod_out), np.concatenate(val_out))


def generate_streaming(spec: SeedSpec) -> tuple[SeedData, Iterator[RatingsChunk]]:
    """The small tables now, the ratings as chunks drawn on demand (so loading can overlap drawing).

    The returned ``SeedData`` has empty rating arrays; consume the iterator to get them.
    """
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    products, line_idx, vendor_idx = _products(rng, spec.products)
    user, item, line_taste = _planted_features(rng, spec.customers, line_idx, vendor_idx)
    customers = _customers(rng, spec.customers, _faker_pools(spec.seed))
    counts = _ratings_per_customer(rng, spec.customers, spec.products, spec.ratings)
    codes = np.array([p[0] for p in products])
    truth = PlantedTruth(
        customer_numbers=np.arange(FIRST_CUSTOMER_NUMBER, FIRST_CUSTOMER_NUMBER + spec.customers),
        product_codes=codes, user_features=user, item_features=item, line_taste=line_taste,
    )
    empty = np.empty(0, dtype=np.int64)
    tables = SeedData(productlines=[(line, desc) for line, desc in PRODUCT_LINES.items()],
                      products=products, customers=customers, ratings_customer=empty, ratings_product=empty,
                      ratings_value=empty.astype(np.int8), truth=truth)
    return tables, _rating_chunks(rng, spec, user, item, counts, codes)


def generate(spec: SeedSpec) -> SeedData:
    """Build every row for ``spec`` in memory."""
    tables, chunks = generate_streaming(spec)
    drawn = list(chunks)
    tables.ratings_customer = np.concatenate([c.customers for c in drawn])
    tables.ratings_product = np.concatenate([c.products for c in drawn])
    tables.ratings_value = np.concatenate([c.stars for c in drawn])
    return tables


def planted_truth(spec: SeedSpec) -> PlantedTruth:
    """Regenerate the planted truth from the seeding arguments (skips building ratings)."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    products, line_idx, vendor_idx = _products(rng, spec.products)
    user, item, line_taste = _planted_features(rng, spec.customers, line_idx, vendor_idx)
    return PlantedTruth(
        customer_numbers=np.arange(FIRST_CUSTOMER_NUMBER, FIRST_CUSTOMER_NUMBER + spec.customers),
        product_codes=np.array([p[0] for p in products]), user_features=user, item_features=item,
        line_taste=line_taste,
    )
