"""The recommendations web page: what the front end consumes, made visible.

Reads the delivered recommendation objects (JSON lines under ``YYYY/MM/DD/HH/``) from the
recommendations bucket, lists recent sessions, and shows for a customer the products browsed and
recommended, with names, lines, scores and the model version. Flask serves it; Jinja renders it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources as package_files

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

from recsys.apps.source import Product, product_catalogue
from recsys.contracts import ERROR_KEY_PREFIX
from recsys.core import aws
from recsys.core.config import Settings

log = logging.getLogger(__name__)
MAX_OBJECTS = 500


@dataclass
class SessionRecommendations:
    """One delivered recommendation record, as the page shows it."""

    session_id: str
    customer_number: int | None
    model_version: str
    strategy: str
    processed_at: str
    browsed: list[str]
    recommended: list[tuple[str, float]]
    similar: list[tuple[str, float]]
    s3_key: str

    @classmethod
    def from_line(cls, line: dict, key: str) -> "SessionRecommendations":
        return cls(
            session_id=line["session_id"],
            customer_number=line.get("customer_number"),
            model_version=line.get("model_version", ""),
            strategy=line.get("strategy", ""),
            processed_at=line.get("processed_at", ""),
            browsed=list(line.get("browsed_items", [])),
            recommended=[(i["product_code"], float(i["score"])) for i in line.get("recommended_items", [])],
            similar=[(i["product_code"], float(i["score"])) for i in line.get("similar_items", [])],
            s3_key=key,
        )


@dataclass
class RecommendationFeed:
    """The newest delivered records, newest first."""

    sessions: list[SessionRecommendations] = field(default_factory=list)
    objects_read: int = 0

    def customers(self) -> list[int]:
        return sorted({s.customer_number for s in self.sessions if s.customer_number is not None})

    def for_customer(self, number: int) -> list[SessionRecommendations]:
        return [s for s in self.sessions if s.customer_number == number]


def read_feed(settings: Settings, max_objects: int = MAX_OBJECTS) -> RecommendationFeed:
    """Read up to ``max_objects`` of the newest delivered objects (error prefix excluded)."""
    s3 = aws.client("s3", settings)
    bucket = settings.recommendations_bucket
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [(o["LastModified"], o["Key"]) for o in page.get("Contents", [])
                 if not o["Key"].startswith(ERROR_KEY_PREFIX)]
    keys.sort(reverse=True)
    feed = RecommendationFeed()
    for _, key in keys[:max_objects]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        records = [SessionRecommendations.from_line(json.loads(l), key) for l in body.splitlines() if l.strip()]
        feed.sessions += sorted(records, key=lambda r: r.processed_at, reverse=True)
        feed.objects_read += 1
    feed.sessions.sort(key=lambda r: r.processed_at, reverse=True)
    return feed


def create_app(settings: Settings) -> Flask:
    """The Flask app; the feed is re-read on each page view so new deliveries show up."""
    templates = str(package_files.files("recsys.apps") / "templates")
    app = Flask(__name__, template_folder=templates)
    catalogue: dict[str, Product] = {}

    def product(code: str) -> Product:
        if not catalogue:
            catalogue.update(product_catalogue(settings))
        return catalogue.get(code, Product(code, "(unknown product)", ""))

    app.jinja_env.globals["product"] = product

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/")
    def index():
        feed = read_feed(settings)
        chosen = request.args.get("customer", type=int)
        if chosen is not None:
            return redirect(url_for("customer_page", number=chosen))
        return render_template("index.html", feed=feed, sessions=feed.sessions[:100])

    @app.get("/customer/<int:number>")
    def customer_page(number: int):
        feed = read_feed(settings)
        sessions = feed.for_customer(number)
        if not sessions:
            abort(404, f"no delivered recommendations for customer {number}")
        return render_template("customer.html", feed=feed, number=number, latest=sessions[0],
                               earlier=sessions[1:])

    @app.get("/api/customer/<int:number>")
    def customer_api(number: int):
        sessions = read_feed(settings).for_customer(number)
        if not sessions:
            abort(404)
        return jsonify([s.__dict__ for s in sessions])

    return app
