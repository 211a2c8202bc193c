"""The online recommendations API: HTTP JSON over the live model in pgvector (FastAPI).

One ASGI app, run unchanged by uvicorn (``recsys api``, 127.0.0.1) and by AWS Lambda behind a
Function URL (``recsys.serving.api_handler``, through Mangum). It serves the Firehose Lambda's own code:

* ``GET /customers/{customerNumber}/recommendations``: ``recsys.serving.recommend.known_customer_items``
  (the stored vector, minus the items the live version lists as rated unless ``exclude_rated=false``:
  the exclusion rule of the stream, ``recsys.serving.recommend.exclusions``);
* ``GET /products/{productCode}/similar``: ``recsys.serving.recommend.similar_to_item``;
* ``POST /recommendations``: an activity event, validated by ``recsys.serving.events.parse_event`` and
  served by ``recsys.serving.handler.ServingRuntime.serve``: the very record the stream writes;
* ``GET /health`` (database, live model, serving pointer) and ``GET /version``.

Every answer names the model version that produced it. Errors are RFC 9457 problem details
(``application/problem+json``): 400 for a malformed request (bad path or query parameter, an
integer that is not plain digits, a body that is not an acceptable JSON document), 404 for a
customer or product the live model does not know (or an unknown path), 413 for a body over the
limit (``BodyLimit``), 422 for a JSON body that is not a servable activity event, 503 when pgvector
or the model artifacts cannot be reached (never made-up results, never a host name). Parameters
are validated (types, ranges, the product code's characters) before any SQL runs, and every query
is parameterised. Routes live on ``router`` and get the runtime through ``serving_runtime`` (a
dependency reading ``app.state.runtime``), so ``create_app`` only assembles.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.contracts import (
    DEFAULT_API_MAX_BODY_BYTES,
    DEFAULT_TOP_K,
    MAX_CUSTOMER_NUMBER,
    MAX_TOP_K,
    STRATEGY_FOLD_IN,
    STRATEGY_KNOWN_CUSTOMER,
    STRATEGY_POPULAR_FALLBACK,
)
from recsys.serving import vector_store
from recsys.serving.database import DatabaseUnavailable
from recsys.serving.events import ActivityEvent, InvalidEvent, UnacceptableDocument, parse_event
from recsys.serving.handler import ServingRuntime
from recsys.serving.model_cache import ModelUnavailable
from recsys.serving.recommend import Lookup, known_customer_items, similar_to_item

API_VERSION = "1.0.0"
SERVICE = "recsys-api"
PROBLEM_JSON = "application/problem+json"
PRODUCT_CODE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
T = TypeVar("T")
log = logging.getLogger(__name__)


# ---- response and request documents ---------------------------------------------------------------


class ScoredItemOut(BaseModel):
    product_code: str = Field(examples=["S18_1749"])
    score: float = Field(description="Cosine similarity (1 - cosine distance) to the query", examples=[0.5438])


class CustomerRecommendations(BaseModel):
    customer_number: int
    model_version: str = Field(description="The live model version that produced the items")
    strategy: str = Field(description=f"How the query vector was obtained: always {STRATEGY_KNOWN_CUSTOMER!r} here")
    exclude_rated: bool
    k: int
    items: list[ScoredItemOut] = Field(description="Best first; exactly k when k eligible items exist")
    fewer_than_k: bool = Field(description="Fewer than k items were left after the exclusions")


class SimilarProducts(BaseModel):
    product_code: str
    model_version: str
    k: int
    items: list[ScoredItemOut] = Field(description="Best first, the product itself excluded")


class BrowsedItemIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    product_code: str = Field(min_length=1, examples=["S10_1678"])
    quantity: int = Field(1, ge=1)
    in_shopping_cart: bool = False


class ActivityEventIn(BaseModel):
    """The activity event the Kinesis stream carries (docs/architecture.md, "Activity event")."""

    model_config = ConfigDict(extra="allow", title="ActivityEvent")
    session_id: str = Field(min_length=1, examples=["5b0e3c1e-web"])
    customer_number: int | None = Field(
        description="null for an anonymous visitor", examples=[103], ge=1, le=MAX_CUSTOMER_NUMBER
    )
    event_time: datetime = Field(examples=["2026-11-26T14:00:00Z"])
    browse_history: list[BrowsedItemIn]
    city: str | None = None
    country: str | None = None
    credit_limit: float | None = None
    event_type: str | None = Field(None, description='"heartbeat" events are not served (the stream drops them)')


class RecommendationRecordOut(BaseModel):
    """The recommendation record the Firehose Lambda writes for the same event."""

    model_config = ConfigDict(title="RecommendationRecord")
    session_id: str
    customer_number: int | None
    event_time: str
    browsed_items: list[str]
    model_version: str
    strategy: str = Field(
        description=f"{STRATEGY_KNOWN_CUSTOMER!r} (the stored vector), {STRATEGY_FOLD_IN!r} "
        f"(a customer the model has never seen, from the browse history) or "
        f"{STRATEGY_POPULAR_FALLBACK!r} (nothing browsed is known)"
    )
    recommended_items: list[ScoredItemOut]
    similar_items: list[ScoredItemOut]
    processed_at: str
    fewer_than_k: bool = Field(
        description="Fewer than k recommended items were left after the exclusions "
        "(a known customer who rated nearly every product)"
    )


class Check(BaseModel):
    status: Literal["ok", "failed"]
    detail: str | None = None
    version: str | None = None


HealthStatus = Literal["ok", "degraded", "unavailable"]


class Health(BaseModel):
    status: HealthStatus = Field(
        description="unavailable (HTTP 503): no database or no live model; degraded: the model "
        "artifacts cannot be read, so POST /recommendations fails while the GET endpoints work"
    )
    database: Check
    live_model: Check
    model_pointer: Check


class VersionInfo(BaseModel):
    service: str
    api_version: str
    model_version: str | None = Field(description="The live model version, null when the database does not answer")
    python: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


class ApiProblem(Exception):
    """An error answered as problem details."""

    def __init__(self, status: int, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def problem_body(status: int, detail: str, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **({"instance": instance} if instance else {}),
        **extra,
    }


def problem_response(status: int, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, instance, **extra), status_code=status, media_type=PROBLEM_JSON)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request",
        404: "Unknown customer, product or path",
        413: "Request body larger than the API reads",
        422: "Not a servable activity event",
        503: "pgvector or the model artifacts unavailable",
    }
    return {s: {"description": descriptions[s], "model": Problem} for s in statuses}


def public_reason(exc: Exception) -> str:
    """What a problem detail or health check may say about an infrastructure failure: its first clause
    ("pgvector unreachable"), never the driver's message after it (host names, ports, endpoint URLs)."""
    return str(exc).split(": ", 1)[0]


# ---- bounded requests -----------------------------------------------------------------------------


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit:,} bytes", max_body_bytes=limit)


class BodyLimit:
    """ASGI middleware: a request whose ``Content-Length`` exceeds ``max_bytes`` gets a 413 problem
    before any of its body is read; a body without one (chunked) fails with 413 as soon as the bytes
    read pass the limit. Either way at most ``max_bytes`` (plus one chunk) are held in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or len(declared) > 20 or int(declared) > self.max_bytes):
            problem = (
                BodyTooLarge(self.max_bytes)
                if declared.isdigit()
                else ApiProblem(400, "Content-Length is not a decimal number")
            )
            response = problem_response(problem.status, problem.detail, scope["path"], **problem.extra)
            await response(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, bounded_receive, send)


DECIMAL_DIGITS = re.compile(r"[0-9]{1,20}")


def _plain_decimal(value: object) -> object:
    """Path and query integers are plain decimal digits: no sign, blank, underscore, fraction or exponent
    (which Python's and pydantic's int parsing would accept)."""
    if isinstance(value, str) and not DECIMAL_DIGITS.fullmatch(value):
        raise ValueError("must be a plain decimal integer (digits 0-9 only)")
    return value


PLAIN_DECIMAL = BeforeValidator(_plain_decimal)


# ---- routes ---------------------------------------------------------------------------------------


def serving_runtime(request: Request) -> ServingRuntime:
    """The app's runtime (its database pool and model cache), a dependency of every route."""
    runtime: ServingRuntime = request.app.state.runtime  # set by create_app
    return runtime


Runtime = Annotated[ServingRuntime, Depends(serving_runtime)]
router = APIRouter()


def one_statement(runtime: ServingRuntime, work: Callable[[vector_store.Connection], T]) -> T:
    """``work(conn)`` on a pooled connection in autocommit: each lookup is one statement that reads
    one model version by itself, so it needs no transaction (and no extra round trips)."""

    def run(conn: vector_store.Connection) -> T:
        conn.autocommit = True
        try:
            return work(conn)
        finally:
            if not conn.closed:
                conn.autocommit = False

    return runtime.db.run(run)


@router.get(
    "/customers/{customerNumber}/recommendations",
    response_model=CustomerRecommendations,
    responses=_problems(400, 404, 503),
    tags=["recommendations"],
)
def customer_recommendations(
    runtime: Runtime,
    customer_number: Annotated[int, Path(alias="customerNumber", ge=1, le=MAX_CUSTOMER_NUMBER), PLAIN_DECIMAL],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many items"), PLAIN_DECIMAL] = DEFAULT_TOP_K,
    exclude_rated: Annotated[bool, Query(description="Leave out the items the customer rated")] = True,
) -> CustomerRecommendations:
    """A known customer's top k items now, from their vector in the live model."""
    found = one_statement(
        runtime, lambda conn: known_customer_items(conn, customer_number, k, exclude_rated=exclude_rated)
    )
    version = _live_version(found)
    if found.items is None:
        raise ApiProblem(404, f"customer {customer_number} is not in model version {version}", model_version=version)
    return CustomerRecommendations(
        customer_number=customer_number,
        model_version=version,
        strategy=STRATEGY_KNOWN_CUSTOMER,
        exclude_rated=exclude_rated,
        k=k,
        items=[ScoredItemOut(**i.as_record()) for i in found.items],
        fewer_than_k=len(found.items) < k,
    )


@router.get(
    "/products/{productCode}/similar",
    response_model=SimilarProducts,
    responses=_problems(400, 404, 503),
    tags=["recommendations"],
)
def similar_products(
    runtime: Runtime,
    product_code: Annotated[str, Path(alias="productCode", pattern=PRODUCT_CODE_PATTERN)],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many items"), PLAIN_DECIMAL] = DEFAULT_TOP_K,
) -> SimilarProducts:
    """The k products nearest to one product in the live model."""
    found = one_statement(runtime, lambda conn: similar_to_item(conn, product_code, k))
    version = _live_version(found)
    if found.items is None:
        raise ApiProblem(404, f"product {product_code} is not in model version {version}", model_version=version)
    return SimilarProducts(
        product_code=product_code,
        model_version=version,
        k=k,
        items=[ScoredItemOut(**i.as_record()) for i in found.items],
    )


def read_event(body: bytes) -> ActivityEvent:
    """The body's activity event (CPU-bound, bounded by the body limit: run off the event loop)."""
    try:
        event = parse_event(body)
    except UnacceptableDocument as exc:
        raise ApiProblem(400, f"request body rejected: {exc}") from None
    except InvalidEvent as exc:
        raise ApiProblem(422, str(exc)) from None
    if event.is_droppable:
        raise ApiProblem(
            422,
            "nothing to serve: heartbeats and anonymous events with an empty browse history are dropped by the stream",
        )
    return event


@router.post(
    "/recommendations",
    response_model=RecommendationRecordOut,
    responses=_problems(400, 413, 422, 503),
    tags=["recommendations"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActivityEvent"}}},
        }
    },
)
async def recommend_for_event(request: Request, runtime: Runtime) -> Response:
    """Recommendations for an activity event (session browse history, customer features): the
    record the Firehose Lambda writes for the same event (fold-in for customers the model has
    never seen, the popular fallback when nothing browsed is known)."""
    body = await request.body()  # bounded by BodyLimit
    event = await run_in_threadpool(read_event, body)
    [line] = await run_in_threadpool(runtime.serve, [event])
    return Response(line.rstrip(b"\n"), media_type="application/json")


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"description": "unavailable", "model": Health}},
    tags=["operations"],
)
def health(runtime: Runtime) -> JSONResponse:
    """Database reachable, a model live in pgvector, the serving pointer readable."""
    report = _health(runtime)
    return JSONResponse(report.model_dump(), status_code=503 if report.status == "unavailable" else 200)


@router.get("/version", response_model=VersionInfo, tags=["operations"])
def version(runtime: Runtime) -> VersionInfo:
    """The API's version and the live model version."""
    try:
        model_version = runtime.db.run(vector_store.live_version)
    except (DatabaseUnavailable, vector_store.VectorStoreError):
        model_version = None
    return VersionInfo(
        service=SERVICE, api_version=API_VERSION, model_version=model_version, python=platform.python_version()
    )


# ---- the app --------------------------------------------------------------------------------------


class RecommendationsApp(FastAPI):
    """FastAPI serving the document ``_openapi_document`` makes of its routes at /openapi.json."""

    def openapi(self) -> dict[str, Any]:
        return _openapi_document(self)


def create_app(runtime: ServingRuntime, max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES) -> FastAPI:
    """The API over ``runtime`` (its database pool and model cache), for uvicorn or Mangum; request
    bodies longer than ``max_body_bytes`` are refused with 413."""
    app = RecommendationsApp(
        title="recsys recommendations API",
        version=API_VERSION,
        description=__doc__.split("\n\n")[1],
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def _live_version(found: Lookup) -> str:
    if found.model_version is None:
        raise ModelUnavailable("no model is live in pgvector: run `recsys load-embeddings`")
    return found.model_version


def _health(runtime: ServingRuntime) -> Health:
    try:
        live = runtime.db.run(vector_store.live_model)
        database = Check(status="ok")
        live_check = (
            Check(status="ok", version=live.version)
            if live
            else Check(status="failed", detail="no model is live in pgvector: run `recsys load-embeddings`")
        )
    except (DatabaseUnavailable, vector_store.VectorStoreError) as exc:
        log.warning("health: database check failed: %s", exc)
        database = Check(status="failed", detail=public_reason(exc))
        live_check = Check(status="failed", detail="database unavailable")
    try:
        pointer = Check(status="ok", version=runtime.models.current().version)
    except Exception as exc:
        log.warning("health: model pointer check failed: %s", exc)
        pointer = Check(status="failed", detail=f"{type(exc).__name__}: {public_reason(exc)}")
    status: HealthStatus = (
        "unavailable"
        if "failed" in (database.status, live_check.status)
        else "degraded"
        if pointer.status == "failed"
        else "ok"
    )
    return Health(status=status, database=database, live_model=live_check, model_pointer=pointer)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"parameter": ".".join(str(part) for part in e["loc"][1:]) or e["loc"][0], "message": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
        return problem_response(400, detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), request.url.path)

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(ModelUnavailable)
    @app.exception_handler(vector_store.VectorStoreError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: 503: %s", request.method, request.url.path, exc)
        return problem_response(503, public_reason(exc), request.url.path)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "the server failed to answer this request", request.url.path)


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, made to say what the app does: problem details (not FastAPI's 422
    validation body) for errors, and the activity-event schema for the POST body."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    event_schema = ActivityEventIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(event_schema.pop("$defs", {}))
    schemas["ActivityEvent"] = event_schema
    for path in document["paths"].values():
        for operation in path.values():
            responses = operation["responses"]
            for status, response in list(responses.items()):
                body = response.get("content", {}).get("application/json", {})
                reference = body.get("schema", {}).get("$ref", "")
                if reference.endswith("/HTTPValidationError"):  # FastAPI's own 422: this app answers 400
                    del responses[status]
                elif reference.endswith("/Problem"):
                    response["content"] = {PROBLEM_JSON: body}
    app.openapi_schema = document
    return document
