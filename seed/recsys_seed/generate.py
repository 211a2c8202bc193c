"""Deterministic, classicmodels-shaped data with planted taste structure (generator "planted-v2").

Everything is drawn from one ``numpy`` generator seeded by ``SeedSpec.seed``; Faker (slow) only
builds small name pools once, seeded too. The same spec gives identical rows.

Planted model: a customer's affinity for a product is ``user_features @ item_features.T`` where

    item_features = [hidden (8) | line one-hot (7) | vendor one-hot (13) | price_z | size_z | popularity]
    user_features = [1.0 h_u    | 1.6 l_u          | 0.6 v_u            | 0.5 p_u | 0.5 s_u | 0.8       ]

(hidden item factors, taste over the seven product lines and the vendors, price and model-size
preference, long-tailed item popularity). Part of each customer's taste follows from what a shop
knows about them: every taste block ``t`` in (h, l, v, p, s) is

    t_u = sqrt(share) * A_t(country, creditLimit) + sqrt(1 - share) * I_t,u

with the attribute part ``A_t`` and the individual part ``I_t,u`` independent and drawn from the
same distribution, so ``share`` (``SeedSpec.attribute_share``, default 0.5) is the share of the
taste's variance the attributes explain. Geography: ``country`` -> its region (``REGIONS``, a
public map) and country effects drive the hidden, line and vendor tastes; creditLimit drives the
price preference and, with the region, the model-size preference (docs/train.md, "Planted data").

A customer rates the products with the highest affinity plus Gumbel noise (a softmax sample
without replacement); the rating value grows with affinity, plus noise. ``PlantedTruth`` holds
those features, so evaluation can rank held-out products by the true affinity (the best any model
can do) and by the affinity expected from the attributes alone (the best a model can do for a
customer it knows nothing else about).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

GENERATOR_VERSION = "planted-v2"
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
    "Classic Cars": [
        "Ferrari Dino",
        "Chevrolet Corvette",
        "Ford Mustang",
        "Porsche 356",
        "Jaguar E-type",
        "Alpine Renault",
        "Mercedes-Benz SL",
        "Aston Martin DB5",
        "Dodge Charger",
        "Pontiac GTO",
    ],
    "Motorcycles": [
        "Harley Davidson Chopper",
        "Ducati 900",
        "Honda CB750",
        "BMW R75",
        "Triumph Bonneville",
        "Indian Chief",
        "Yamaha YZR",
        "Suzuki XREO",
        "Moto Guzzi V7",
        "Norton Commando",
    ],
    "Planes": [
        "Spitfire",
        "P-51 Mustang",
        "Boeing 767",
        "Douglas DC-3",
        "Concorde",
        "Fokker Triplane",
        "Lockheed Constellation",
        "Piper J-3 Cub",
        "F/A-18 Hornet",
        "Sopwith Camel",
    ],
    "Ships": [
        "Titanic",
        "HMS Bounty",
        "Queen Mary",
        "USS Constitution",
        "Mayflower",
        "Cutty Sark",
        "Pont Yacht",
        "Santa Maria",
        "Bismarck",
        "Andrea Doria",
    ],
    "Trains": [
        "Collectable Wooden Train",
        "Flying Scotsman",
        "Orient Express",
        "Union Pacific Big Boy",
        "Mallard",
        "Shinkansen 0",
        "Pennsylvania GG1",
        "Rocket",
        "Royal Scot",
        "Santa Fe Chief",
    ],
    "Trucks and Buses": [
        "Ford F-150",
        "Volkswagen Transporter",
        "Mack Tanker",
        "Greyhound Scenicruiser",
        "Peterbilt 379",
        "Dodge Power Wagon",
        "Routemaster",
        "Chevy Pickup",
        "Kenworth W900",
        "Diamond T620",
    ],
    "Vintage Cars": [
        "Ford Model T",
        "Bugatti Royale",
        "Rolls-Royce Silver Ghost",
        "Duesenberg SJ",
        "Packard Twelve",
        "Cadillac V16",
        "Mercedes-Benz SSK",
        "Hispano-Suiza",
        "Bentley Blower",
        "Stutz Bearcat",
    ],
}
LINE_YEARS = {
    "Classic Cars": (1948, 2005),
    "Motorcycles": (1936, 2003),
    "Planes": (1917, 1985),
    "Ships": (1492, 1960),
    "Trains": (1829, 1964),
    "Trucks and Buses": (1926, 1996),
    "Vintage Cars": (1903, 1940),
}
SCALES = ["1:10", "1:12", "1:18", "1:24", "1:32", "1:50", "1:72", "1:700"]
VENDORS = [
    "Min Lin Diecast",
    "Classic Metal Creations",
    "Highway 66 Mini Classics",
    "Red Start Diecast",
    "Motor City Art Classics",
    "Second Gear Diecast",
    "Autoart Studio Design",
    "Welly Diecast Productions",
    "Unimax Art Galleries",
    "Studio M Art Models",
    "Exoto Designs",
    "Gearbox Collectibles",
    "Carousel DieCast Legends",
]
# (city, state or None, postal code pattern ('#' = digit) or None, country): consistent by construction.
LOCATIONS = [
    ("Nantes", None, "440##", "France"),
    ("Paris", None, "750##", "France"),
    ("Lyon", None, "690##", "France"),
    ("Marseille", None, "130##", "France"),
    ("Strasbourg", None, "670##", "France"),
    ("Las Vegas", "NV", "891##", "USA"),
    ("San Francisco", "CA", "941##", "USA"),
    ("NYC", "NY", "100##", "USA"),
    ("Boston", "MA", "021##", "USA"),
    ("Philadelphia", "PA", "191##", "USA"),
    ("Allentown", "PA", "181##", "USA"),
    ("New Haven", "CT", "065##", "USA"),
    ("Glendale", "CA", "912##", "USA"),
    ("Cambridge", "MA", "021##", "USA"),
    ("Melbourne", "Victoria", "30##", "Australia"),
    ("Sydney", "NSW", "20##", "Australia"),
    ("Madrid", None, "280##", "Spain"),
    ("Barcelona", None, "080##", "Spain"),
    ("Sevilla", None, "410##", "Spain"),
    ("Frankfurt", None, "603##", "Germany"),
    ("München", None, "80###", "Germany"),
    ("Köln", None, "50###", "Germany"),
    ("London", None, "WX1 #AA", "UK"),
    ("Manchester", None, "M# #AA", "UK"),
    ("Liverpool", None, "L# #AA", "UK"),
    ("Tokyo", "Tokyo", "106-00##", "Japan"),
    ("Osaka", "Osaka", "530-00##", "Japan"),
    ("Torino", None, "101##", "Italy"),
    ("Milan", None, "201##", "Italy"),
    ("Bergamo", None, "241##", "Italy"),
    ("Helsinki", None, "00###", "Finland"),
    ("Oulu", None, "90###", "Finland"),
    ("Oslo", None, "0###", "Norway"),
    ("Stavern", None, "32##", "Norway"),
    ("Singapore", None, "0795##", "Singapore"),
    ("Vancouver", "BC", "V6B #A#", "Canada"),
    ("Montréal", "Québec", "H1J #A#", "Canada"),
    ("Auckland", None, "10##", "New Zealand"),
    ("Wellington", None, "60##", "New Zealand"),
    ("Luleå", None, "958 ##", "Sweden"),
    ("Kobenhavn", None, "1###", "Denmark"),
    ("Bruxelles", None, "10##", "Belgium"),
    ("Genève", None, "12##", "Switzerland"),
    ("Dublin", None, None, "Ireland"),
    ("Salzburg", None, "50##", "Austria"),
    ("Makati City", None, "12##", "Philippines"),
    ("Central Hong Kong", None, None, "Hong Kong"),
    ("Saint Petersburg", None, "1970##", "Russia"),
    ("Warszawa", None, "01-0##", "Poland"),
    ("Herzlia", None, "467##", "Israel"),
    ("Johannesburg", None, "20##", "South Africa"),
]
SALES_REPS = [1165, 1166, 1188, 1216, 1286, 1323, 1337, 1370, 1401, 1501, 1504, 1611, 1612, 1621, 1702]
COMPANY_SUFFIXES = [
    "Co.",
    "Ltd.",
    "Inc.",
    "Gifts",
    "Collectables",
    "Imports",
    "Replicas",
    "Models",
    "Souveniers",
    "Diecast Classics",
    "Auto Parts",
    "Mini Wheels Co.",
    "& Co",
]

# Region of every country in LOCATIONS: public geography, so a model may derive it from `country`.
REGIONS = {
    "USA": "North America",
    "Canada": "North America",
    "France": "Western Europe",
    "Germany": "Western Europe",
    "Belgium": "Western Europe",
    "Switzerland": "Western Europe",
    "Austria": "Western Europe",
    "UK": "Western Europe",
    "Ireland": "Western Europe",
    "Spain": "Southern Europe",
    "Italy": "Southern Europe",
    "Finland": "Nordics",
    "Norway": "Nordics",
    "Sweden": "Nordics",
    "Denmark": "Nordics",
    "Japan": "Asia-Pacific",
    "Singapore": "Asia-Pacific",
    "Philippines": "Asia-Pacific",
    "Hong Kong": "Asia-Pacific",
    "Australia": "Asia-Pacific",
    "New Zealand": "Asia-Pacific",
    "Russia": "EMEA other",
    "Poland": "EMEA other",
    "Israel": "EMEA other",
    "South Africa": "EMEA other",
}
REGION_NAMES = sorted(set(REGIONS.values()))
COUNTRY_NAMES = sorted(REGIONS)

HIDDEN_FACTORS = 8
LINE_WEIGHT, VENDOR_WEIGHT, HIDDEN_WEIGHT, POPULARITY_WEIGHT = 1.6, 0.6, 1.0, 0.8
PRICE_WEIGHT, SIZE_WEIGHT = 0.5, 0.5  # price and model-size preference
LINE_CONCENTRATION = 0.4  # Dirichlet concentration of a line taste
DEFAULT_ATTRIBUTE_SHARE = 0.5
REGION_SHARE = 0.7  # of the geographic attribute part: region rather than country-within-region
CREDIT_SIZE_SHARE = 0.6  # of the size attribute part: credit limit rather than region
CREDIT_MEDIAN, CREDIT_SIGMA = 75_000.0, 0.5  # the creditLimit lognormal
NO_CREDIT_Z = -1.0  # customers without a credit line (creditLimit 0) lean to cheap, small models
# Customer draws made before the Faker pools are needed: only the pools' sizes matter to the RNG.
POOL_SIZES = {"first": 300, "last": 300, "street": 400, "company": 300}
_NEG_LOG_SCALE = -np.log([float(s.split(":")[1]) for s in SCALES])
SIZE_Z = (_NEG_LOG_SCALE - _NEG_LOG_SCALE.mean()) / _NEG_LOG_SCALE.std()  # 1:10 is the biggest model
TASTE_BLOCKS = ("hidden", "line", "vendor", "price", "size")


@dataclass(frozen=True)
class SeedSpec:
    """What to generate. Defaults are the lab's scale and half of the taste explained by attributes."""

    customers: int = 122
    products: int = 110
    ratings: int = 2500
    seed: int = 42
    attribute_share: float = DEFAULT_ATTRIBUTE_SHARE

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
        if not 0.0 <= self.attribute_share <= 1.0:  # also refuses nan
            raise ValueError(f"--attribute-share must be in 0..1, got {self.attribute_share}")


@dataclass(frozen=True)
class PlantedTruth:
    """The generating model: ``affinity = user_features @ item_features.T`` (higher = more liked)."""

    customer_numbers: np.ndarray  # (C,)
    product_codes: np.ndarray  # (P,) str
    user_features: np.ndarray  # (C, F) float32
    item_features: np.ndarray  # (P, F) float32
    line_taste: np.ndarray  # (C, 7) softmax of the line logits, over PRODUCT_LINES order
    user_features_expected: np.ndarray  # (C, F) float32: E[user_features | country, creditLimit]
    attribute_share: float = DEFAULT_ATTRIBUTE_SHARE

    def affinity(self, customer_index: int | np.ndarray | slice = slice(None)) -> np.ndarray:
        """True affinity of the given customers (by row index) for every product."""
        return self.user_features[customer_index] @ self.item_features.T

    def expected_affinity(self, customer_index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The affinity expected from the customers' attributes alone: what is knowable without history.

        The individual taste parts have mean zero (line logits are centred per customer), so this is
        the attribute parts' affinity (plus the popularity everyone shares).
        """
        return self.user_features_expected[customer_index] @ self.item_features.T

    def explained_share(self, max_customers: int = 5000) -> float:
        """Measured share of the taste variance the attributes explain: variance over products of the
        affinity without the popularity term everyone shares, attribute part vs all, mean over customers."""
        rows = slice(0, min(max_customers, len(self.customer_numbers)))
        taste = self.user_features[rows, :-1] @ self.item_features[:, :-1].T
        known = self.user_features_expected[rows, :-1] @ self.item_features[:, :-1].T
        return float(known.var(axis=1).mean() / taste.var(axis=1).mean())

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
    makers = {
        "first": fake.first_name,
        "last": fake.last_name,
        "street": fake.street_address,
        "company": fake.last_name,
    }
    return {name: [makers[name]() for _ in range(size)] for name, size in POOL_SIZES.items()}


def _fill_pattern(pattern: str | None, digits: np.ndarray, letters: np.ndarray) -> str | None:
    if pattern is None:
        return None
    out, d, a = [], iter(digits), iter(letters)
    for ch in pattern:
        out.append(str(next(d)) if ch == "#" else chr(65 + next(a)) if ch == "A" else ch)
    return "".join(out)


@dataclass(frozen=True)
class ProductDraws:
    """What the planted features need to know about the products (row order = product index)."""

    line: np.ndarray  # index into PRODUCT_LINES
    vendor: np.ndarray  # index into VENDORS
    scale: np.ndarray  # index into SCALES
    buy_price: np.ndarray


def _products(rng: np.random.Generator, n: int) -> tuple[list[tuple], ProductDraws]:
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
        code = f"S{scale.split(':')[1]}_{(j * 7919 + 1678) % (10**width):0{width}d}"
        lo, hi = LINE_YEARS[line]
        year = lo + (j * 31) % (hi - lo + 1)
        name = f"{year} {LINE_SUBJECTS[line][subject_pick[j]]}"
        desc = f"{scale} scale replica of the {name}, by {VENDORS[vendor_idx[j]]}. {PRODUCT_LINES[line]}"
        rows.append(
            (
                code,
                name[:70],
                line,
                scale,
                VENDORS[vendor_idx[j]],
                desc,
                int(stock[j]),
                f"{buy[j]:.2f}",
                f"{msrp[j]:.2f}",
            )
        )
    return rows, ProductDraws(line_idx, vendor_idx, scale_idx, buy)


@dataclass(frozen=True)
class CustomerDraws:
    """Every random draw of the customer rows, made before the tastes (which depend on them)."""

    location: np.ndarray  # index into LOCATIONS
    first: np.ndarray
    last: np.ndarray
    company: np.ndarray
    suffix: np.ndarray
    street: np.ndarray
    has_line2: np.ndarray
    floor: np.ndarray
    phone: np.ndarray
    digits: np.ndarray
    letters: np.ndarray
    rep: np.ndarray
    credit: np.ndarray  # creditLimit; 0 = no credit line

    @property
    def country(self) -> np.ndarray:
        return np.array([LOCATIONS[i][3] for i in self.location])


def _draw_customers(rng: np.random.Generator, n: int) -> CustomerDraws:
    loc_idx = rng.integers(0, len(LOCATIONS), n)
    first = rng.integers(0, POOL_SIZES["first"], n)
    last = rng.integers(0, POOL_SIZES["last"], n)
    company = rng.integers(0, POOL_SIZES["company"], n)
    suffix = rng.integers(0, len(COMPANY_SUFFIXES), n)
    street = rng.integers(0, POOL_SIZES["street"], n)
    has_line2 = rng.random(n) < 0.15
    floor = rng.integers(1, 40, n)
    phone = rng.integers(10_000_000, 99_999_999, n)
    digits = rng.integers(0, 10, (n, 8))
    letters = rng.integers(0, 26, (n, 4))
    rep = rng.integers(0, len(SALES_REPS) + 2, n)  # some customers have no sales rep
    no_credit = rng.random(n) < 0.08
    credit = np.round(rng.lognormal(np.log(CREDIT_MEDIAN), CREDIT_SIGMA, n), -2).clip(1_000, 250_000)
    return CustomerDraws(
        loc_idx,
        first,
        last,
        company,
        suffix,
        street,
        has_line2,
        floor,
        phone,
        digits,
        letters,
        rep,
        np.where(no_credit, 0.0, credit),
    )


def _customer_rows(d: CustomerDraws, pools: dict[str, list[str]]) -> list[tuple]:
    rows = []
    for i in range(len(d.location)):
        city, state, postal, country = LOCATIONS[d.location[i]]
        rows.append(
            (
                FIRST_CUSTOMER_NUMBER + i,
                f"{pools['company'][d.company[i]]} {COMPANY_SUFFIXES[d.suffix[i]]}"[:50],
                pools["last"][d.last[i]],
                pools["first"][d.first[i]],
                f"+{10 + d.location[i]} {d.phone[i]}",
                pools["street"][d.street[i]][:50],
                f"Floor No. {d.floor[i]}" if d.has_line2[i] else None,
                city,
                state,
                _fill_pattern(postal, d.digits[i], d.letters[i]),
                country,
                SALES_REPS[d.rep[i]] if d.rep[i] < len(SALES_REPS) else None,
                f"{d.credit[i]:.2f}",
            )
        )
    return rows


def credit_z(credit: np.ndarray) -> np.ndarray:
    """Standardised log creditLimit (the lognormal's own scale); ``NO_CREDIT_Z`` for a limit of 0."""
    credit = np.asarray(credit, dtype=np.float64)
    positive = credit > 0
    z = (np.log(np.where(positive, credit, 1.0)) - np.log(CREDIT_MEDIAN)) / CREDIT_SIGMA
    return np.where(positive, z, NO_CREDIT_Z)


def _log_line_taste(rng: np.random.Generator, n: int) -> np.ndarray:
    """A line taste in log space (log Dirichlet), centred per row: a constant per customer changes no ranking."""
    logs = np.log(rng.dirichlet(np.full(len(PRODUCT_LINES), LINE_CONCENTRATION), n) + 1e-3)
    return logs - logs.mean(axis=1, keepdims=True)


@dataclass(frozen=True)
class PlantedFeatures:
    user: np.ndarray  # (C, F) float32
    user_expected: np.ndarray  # (C, F) float32: the attribute parts only
    item: np.ndarray  # (P, F) float32
    line_taste: np.ndarray  # (C, 7)


def _planted_features(
    rng: np.random.Generator, share: float, customers: CustomerDraws, products: ProductDraws
) -> PlantedFeatures:
    """User and item features. Draw order: group effects (per region, per country), individual tastes,
    item factors, popularity; each group effect has the distribution of the individual draw it mixes with."""
    country = customers.country
    country_idx = np.searchsorted(COUNTRY_NAMES, country)
    region_idx = np.searchsorted(REGION_NAMES, [REGIONS[c] for c in country])
    n_c, n_p = len(country), len(products.line)
    n_regions, n_countries = len(REGION_NAMES), len(COUNTRY_NAMES)
    hidden_sd = 1 / np.sqrt(HIDDEN_FACTORS)
    hidden_r = rng.normal(0, hidden_sd, (n_regions, HIDDEN_FACTORS))
    hidden_k = rng.normal(0, hidden_sd, (n_countries, HIDDEN_FACTORS))
    line_r = _log_line_taste(rng, n_regions)
    line_k = _log_line_taste(rng, n_countries)
    vendor_r = rng.normal(0, 1, (n_regions, len(VENDORS)))
    vendor_k = rng.normal(0, 1, (n_countries, len(VENDORS)))
    size_r = rng.normal(0, 1, n_regions)
    individual = {"hidden": rng.normal(0, hidden_sd, (n_c, HIDDEN_FACTORS))}
    hidden_v = rng.normal(0, 1, (n_p, HIDDEN_FACTORS))
    individual |= {
        "line": _log_line_taste(rng, n_c),
        "vendor": rng.normal(0, 1, (n_c, len(VENDORS))),
        "price": rng.normal(0, 1, (n_c, 1)),
        "size": rng.normal(0, 1, (n_c, 1)),
    }
    popularity = rng.normal(0, 1.2, n_p)  # log-popularity: long-tailed counts

    def geography(by_region, by_country):
        return np.sqrt(REGION_SHARE) * by_region[region_idx] + np.sqrt(1 - REGION_SHARE) * by_country[country_idx]

    cz = credit_z(customers.credit)
    attribute = {
        "hidden": geography(hidden_r, hidden_k),
        "line": geography(line_r, line_k),
        "vendor": geography(vendor_r, vendor_k),
        "price": cz[:, None],
        "size": (np.sqrt(CREDIT_SIZE_SHARE) * cz + np.sqrt(1 - CREDIT_SIZE_SHARE) * size_r[region_idx])[:, None],
    }
    weight = {
        "hidden": HIDDEN_WEIGHT,
        "line": LINE_WEIGHT,
        "vendor": VENDOR_WEIGHT,
        "price": PRICE_WEIGHT,
        "size": SIZE_WEIGHT,
    }
    a, b = np.sqrt(share), np.sqrt(1.0 - share)
    common = np.full((n_c, 1), POPULARITY_WEIGHT)
    user = np.hstack([weight[t] * (a * attribute[t] + b * individual[t]) for t in TASTE_BLOCKS] + [common])
    expected = np.hstack([weight[t] * a * attribute[t] for t in TASTE_BLOCKS] + [common])
    log_buy = np.log(products.buy_price)
    item = np.hstack(
        [
            hidden_v,
            np.eye(len(PRODUCT_LINES))[products.line],
            np.eye(len(VENDORS))[products.vendor],
            ((log_buy - log_buy.mean()) / log_buy.std())[:, None],
            SIZE_Z[products.scale][:, None],
            popularity[:, None],
        ]
    )
    line_logits = a * attribute["line"] + b * individual["line"]
    line_taste = np.exp(line_logits - line_logits.max(axis=1, keepdims=True))
    return PlantedFeatures(
        user.astype(np.float32),
        expected.astype(np.float32),
        item.astype(np.float32),
        line_taste / line_taste.sum(axis=1, keepdims=True),
    )


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


def _world(spec: SeedSpec) -> tuple[np.random.Generator, list[tuple], CustomerDraws, PlantedFeatures, PlantedTruth]:
    """Everything but the names and the ratings. RNG order: products, customers, planted features."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    products, product_draws = _products(rng, spec.products)
    customers = _draw_customers(rng, spec.customers)
    features = _planted_features(rng, spec.attribute_share, customers, product_draws)
    truth = PlantedTruth(
        customer_numbers=np.arange(FIRST_CUSTOMER_NUMBER, FIRST_CUSTOMER_NUMBER + spec.customers),
        product_codes=np.array([p[0] for p in products]),
        user_features=features.user,
        item_features=features.item,
        line_taste=features.line_taste,
        user_features_expected=features.user_expected,
        attribute_share=spec.attribute_share,
    )
    return rng, products, customers, features, truth


def generate_streaming(spec: SeedSpec) -> tuple[SeedData, Iterator[RatingsChunk]]:
    """The small tables now, the ratings as chunks drawn on demand (so loading can overlap drawing).

    The returned ``SeedData`` has empty rating arrays; consume the iterator to get them.
    """
    rng, products, customers, features, truth = _world(spec)
    counts = _ratings_per_customer(rng, spec.customers, spec.products, spec.ratings)
    empty = np.empty(0, dtype=np.int64)
    tables = SeedData(
        productlines=list(PRODUCT_LINES.items()),
        products=products,
        customers=_customer_rows(customers, _faker_pools(spec.seed)),
        ratings_customer=empty,
        ratings_product=empty,
        ratings_value=empty.astype(np.int8),
        truth=truth,
    )
    return tables, _rating_chunks(rng, spec, features.user, features.item, counts, truth.product_codes)


def generate(spec: SeedSpec) -> SeedData:
    """Build every row for ``spec`` in memory."""
    tables, chunks = generate_streaming(spec)
    drawn = list(chunks)
    tables.ratings_customer = np.concatenate([c.customers for c in drawn])
    tables.ratings_product = np.concatenate([c.products for c in drawn])
    tables.ratings_value = np.concatenate([c.stars for c in drawn])
    return tables


def planted_truth(spec: SeedSpec) -> PlantedTruth:
    """Regenerate the planted truth from the seeding arguments (skips names and ratings)."""
    return _world(spec)[-1]
