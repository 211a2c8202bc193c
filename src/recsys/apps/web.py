"""The recommendations web page: what the front end consumes, made visible.

Two sources, each read through its real interface:

* the **recommendations API** (``RECSYS_API_URL``, ``recsys api``) over HTTP: a customer's
  recommendations now and products similar to a product, for any customer or product the live
  model knows, whether or not they sent events;
* the **delivered stream** (JSON lines under ``YYYY/MM/DD/HH/`` in the recommendations bucket):
  recent sessions, and per customer what they browsed and what the stream recommended then.

Delivered objects are parsed once and kept by key and ETag (Firehose never rewrites an object),
so a page view reads only objects that are new since the last one. A line that is not a
recommendation record is skipped and counted, never a failed page. Flask serves it; Jinja renders it.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass, field
from importlib import resources as package_files

import httpx
from flask import Blueprint, Flask, abort, current_app, jsonify, redirect, render_template, request, url_for

from recsys.apps.source import Product, product_catalogue
from recsys.contracts import ERROR_KEY_PREFIX
from recsys.core import aws
from recsys.core.config import Settings

log = logging.getLogger(__name__)
MAX_OBJECTS = 500
API_TIMEOUT_SECONDS = 10.0
PAGE_K = 10


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
    def from_line(cls, line: dict, key: str) -> SessionRecommendations:
        return cls(
            session_id=str(line["session_id"]),
            customer_number=line.get("customer_number"),
            model_version=line.get("model_version", ""),
            strategy=line.get("strategy", ""),
            processed_at=line.get("processed_at", ""),
            browsed=list(line.get("browsed_items", [])),
            recommended=[(i["product_code"], float(i["score"])) for i in line.get("recommended_items", [])],
            similar=[(i["product_code"], float(i["score"])) for i in line.get("similar_items", [])],
            s3_key=key,
        )


@dataclass(frozen=True)
class DeliveredObject:
    """One delivered object, parsed: its records and how many of its lines were not records."""

    etag: str
    records: list[SessionRecommendations]
    bad_lines: int


def parse_object(body: bytes, key: str, etag: str = "") -> DeliveredObject:
    """The records of one delivered object; a line that is not a recommendation record is counted."""
    records, bad = [], 0
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(SessionRecommendations.from_line(json.loads(line), key))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad += 1
            log.warning("s3 object %s line %d is not a recommendation record (%s): skipped", key, number, exc)
    return DeliveredObject(etag, records, bad)


@dataclass
class RecommendationFeed:
    """The newest delivered records, newest first."""

    sessions: list[SessionRecommendations] = field(default_factory=list)
    objects_read: int = 0  # fetched from S3 for this view
    objects_cached: int = 0  # parsed at an earlier view
    bad_lines: int = 0

    def customers(self) -> list[int]:
        return sorted({s.customer_number for s in self.sessions if isinstance(s.customer_number, int)})

    def for_customer(self, number: int) -> list[SessionRecommendations]:
        return [s for s in self.sessions if s.customer_number == number]


class FeedReader:
    """Reads the newest ``max_objects`` delivered objects, each fetched and parsed once (by key and ETag)."""

    def __init__(self, settings: Settings, max_objects: int = MAX_OBJECTS):
        self._s3 = aws.client("s3", settings)
        self._bucket = settings.recommendations_bucket
        self._max = max_objects
        self._parsed: dict[str, DeliveredObject] = {}
        self._lock = threading.Lock()

    def _newest(self) -> list[tuple[str, str]]:
        listed = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket):
            listed += [
                (o["LastModified"], o["Key"], o.get("ETag", ""))
                for o in page.get("Contents", [])
                if not o["Key"].startswith(ERROR_KEY_PREFIX)
            ]
        listed.sort(reverse=True)
        return [(key, etag) for _, key, etag in listed[: self._max]]

    def read(self) -> RecommendationFeed:
        feed = RecommendationFeed()
        newest = self._newest()
        with self._lock:
            for key, etag in newest:
                cached = self._parsed.get(key)
                if cached is not None and cached.etag == etag:
                    feed.objects_cached += 1
                else:
                    body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
                    cached = self._parsed[key] = parse_object(body, key, etag)
                    feed.objects_read += 1
                feed.sessions += cached.records
                feed.bad_lines += cached.bad_lines
            for stale in set(self._parsed) - {key for key, _ in newest}:
                del self._parsed[stale]  # only the newest objects are kept
        feed.sessions.sort(key=lambda r: r.processed_at, reverse=True)
        return feed


class ApiError(RuntimeError):
    """The API answered with a problem (or did not answer): ``status`` and its ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ApiClient:
    """The page's HTTP client of the recommendations API."""

    def __init__(self, base_url: str, timeout: float = API_TIMEOUT_SECONDS):
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def _get(self, path: str, **params) -> dict:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(
                503, f"recommendations API not reachable at {self.base_url} ({exc}): start it with `recsys api`"
            ) from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def customer_recommendations(self, number: int, k: int = PAGE_K) -> dict:
        return self._get(f"/customers/{number}/recommendations", k=k)

    def similar(self, product_code: str, k: int = PAGE_K) -> dict:
        return self._get(f"/products/{product_code}/similar", k=k)

    def close(self) -> None:
        self._http.close()


def _pairs(items: list[dict]) -> list[tuple[str, float]]:
    return [(i["product_code"], float(i["score"])) for i in items]


@dataclass
class PageSources:
    """What the page views read, built once per app and kept in ``app.extensions``: the delivered
    feed, the API client and the product catalogue (read from the source on first use)."""

    settings: Settings
    feeds: FeedReader
    api: ApiClient
    catalogue: dict[str, Product] = field(default_factory=dict)

    def product(self, code: str) -> Product:
        if not self.catalogue:
            self.catalogue.update(product_catalogue(self.settings))
        return self.catalogue.get(code, Product(code, "(unknown product)", ""))


def sources() -> PageSources:
    """The current app's sources (the views' one dependency)."""
    return current_app.extensions["recsys"]


pages = Blueprint("pages", __name__)


@pages.get("/healthz")
def healthz():
    return "ok"


@pages.get("/")
def index():
    chosen = request.args.get("customer", type=int)
    if chosen is not None:
        return redirect(url_for("pages.customer_page", number=chosen))
    code = request.args.get("product", "").strip()
    if code:
        return redirect(url_for("pages.product_page", code=code))
    feed = sources().feeds.read()
    return render_template("index.html", feed=feed, sessions=feed.sessions[:100])


@pages.get("/customer/<int:number>")
def customer_page(number: int):
    feed = sources().feeds.read()
    api = sources().api
    sessions = feed.for_customer(number)
    latest = sessions[0] if sessions else None
    live, live_error = None, None
    try:
        live = api.customer_recommendations(number)
    except ApiError as exc:
        if exc.status == 404 and not sessions:
            abort(404, f"customer {number} is neither in the live model nor in the delivered sessions")
        live_error = exc.detail
    anchor = (
        latest.browsed[0]
        if latest and latest.browsed
        else live["items"][0]["product_code"]
        if live and live["items"]
        else None
    )
    similar, similar_error = None, None
    if anchor:
        try:
            similar = api.similar(anchor)
        except ApiError as exc:
            similar_error = exc.detail
    return render_template(
        "customer.html",
        feed=feed,
        number=number,
        latest=latest,
        earlier=sessions[1:],
        live=live,
        recommended=_pairs(live["items"]) if live else [],
        live_error=live_error,
        anchor=anchor,
        similar=_pairs(similar["items"]) if similar else [],
        similar_error=similar_error,
    )


@pages.get("/product/<code>")
def product_page(code: str):
    try:
        similar = sources().api.similar(code)
    except ApiError as exc:
        abort(exc.status if exc.status in (400, 404) else 503, exc.detail)
    return render_template(
        "product.html",
        feed=sources().feeds.read(),
        code=code,
        model_version=similar["model_version"],
        similar=_pairs(similar["items"]),
    )


@pages.get("/api/customer/<int:number>")
def customer_api(number: int):
    sessions = sources().feeds.read().for_customer(number)
    if not sessions:
        abort(404)
    return jsonify([s.__dict__ for s in sessions])


def create_app(settings: Settings) -> Flask:
    """The Flask app: the ``pages`` blueprint over this settings' sources (the feed is re-listed on
    each page view so new deliveries show up)."""
    app = Flask(__name__, template_folder=str(package_files.files("recsys.apps") / "templates"))
    page_sources = PageSources(settings, FeedReader(settings), ApiClient(settings.api_url))
    app.extensions["recsys"] = page_sources
    app.jinja_env.globals["product"] = page_sources.product
    app.jinja_env.globals["api_url"] = settings.api_url
    app.register_blueprint(pages)
    return app


def serve_web(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, also as a background job (whose SIGINT a shell sets to ignored)."""
    from werkzeug.serving import make_server  # Flask's own server, only when serving

    server = make_server(host, port, create_app(settings), threaded=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
