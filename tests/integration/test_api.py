"""The recommendations API through a real HTTP client (httpx) against the real server (uvicorn on a
free 127.0.0.1 port), over a PostgreSQL + pgvector of its own (so the test can stop and restart
it) holding the model the streaming tests trained on the seeded source (tests/support/fixtures_api.py).
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent
from openapi_spec_validator import validate

from recsys.apps.api_server import api_runtime
from recsys.core.db import connect_pg
from recsys.serving import vector_store
from recsys.serving.events import parse_event
from recsys.serving.handler import ServingRuntime, transform

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
def conn(api_db):
    connection = connect_pg(api_db.settings)
    yield connection
    connection.close()


def assert_problem(response: httpx.Response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank"
    for fragment in fragments:
        assert fragment in body["detail"], body
    return body


def codes(items: list[dict]) -> list[str]:
    return [i["product_code"] for i in items]


# ---- happy paths ----------------------------------------------------------------------------------


def test_customer_recommendations_exclude_rated_items(client, streaming_model, conn):
    customer = streaming_model.customer_numbers[3]
    response = client.get(f"/customers/{customer}/recommendations", params={"k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customer_number"], body["model_version"], body["strategy"], body["k"], body["exclude_rated"]) == (
        customer,
        streaming_model.version,
        "known_customer",
        5,
        True,
    )
    assert len(body["items"]) == 5 and not set(codes(body["items"])) & streaming_model.rated[customer]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # the same items as the vector store's own query with the customer's rated items excluded
    [expected] = vector_store.nearest_items(
        conn, list(vector_store.user_vectors(conn, [customer]).values()), 5, exclude=[streaming_model.rated[customer]]
    )
    assert codes(body["items"]) == [i.product_code for i in expected]


def test_include_rated_items_on_request(client, streaming_model, conn):
    customer = streaming_model.customer_numbers[3]
    body = client.get(f"/customers/{customer}/recommendations", params={"k": 10, "exclude_rated": "false"}).json()
    [expected] = vector_store.nearest_items(conn, list(vector_store.user_vectors(conn, [customer]).values()), 10)
    assert body["exclude_rated"] is False and codes(body["items"]) == [i.product_code for i in expected]


def test_exactly_k_while_eligible_items_last(client, streaming_model):
    """The customer who rated the most products but left a few unrated (the index scan must pass over
    nearly every neighbour): every k up to the unrated count gets exactly k."""
    unrated = {
        c: len(streaming_model.product_codes) - len(streaming_model.rated[c]) for c in streaming_model.customer_numbers
    }
    customer = min((c for c in unrated if unrated[c] >= 4), key=unrated.get)
    eligible = unrated[customer]
    assert eligible < len(streaming_model.product_codes) // 2, "the test needs a customer who rated most products"
    for k in sorted({1, eligible // 2, eligible, 100}):
        items = client.get(f"/customers/{customer}/recommendations", params={"k": k}).json()["items"]
        assert len(items) == min(k, eligible) and not set(codes(items)) & streaming_model.rated[customer]
    assert len(set(codes(items))) == eligible  # k=100: every unrated product, once


def test_similar_products(client, streaming_model, conn):
    code = streaming_model.product_codes[7]
    body = client.get(f"/products/{code}/similar", params={"k": 7}).json()
    assert (body["product_code"], body["model_version"], body["k"]) == (code, streaming_model.version, 7)
    assert len(body["items"]) == 7 and code not in codes(body["items"])
    [expected] = vector_store.similar_items(conn, [code], 7)
    assert codes(body["items"]) == [i.product_code for i in expected]


def event(customer, browsed: list[str], **extra) -> dict:
    return {
        "session_id": f"api-{uuid.uuid4()}",
        "customer_number": customer,
        "event_time": "2026-11-26T14:00:00Z",
        "city": "Nantes",
        "country": "France",
        "credit_limit": 21000.0,
        "browse_history": [
            {"product_code": c, "quantity": 1 + i % 2, "in_shopping_cart": i == 0} for i, c in enumerate(browsed)
        ],
        **extra,
    }


def firehose_record(api_db, body: dict) -> dict:
    """What the Firehose Lambda's handler writes for the same event (its own runtime, same database)."""
    runtime: ServingRuntime = api_runtime(api_db.settings, pool_size=1)
    data = base64.b64encode(json.dumps(body).encode()).decode()
    response = transform(
        KinesisFirehoseEvent(
            {
                "invocationId": "i",
                "deliveryStreamArn": "arn",
                "region": "us-east-1",
                "records": [{"recordId": "r1", "data": data, "approximateArrivalTimestamp": 0}],
            }
        ),
        runtime,
    )
    [record] = response.records
    assert record.result == "Ok"
    return json.loads(base64.b64decode(record.data))


@pytest.mark.parametrize(
    "who, strategy",
    [
        ("known", "known_customer"),
        ("new", "features+fold_in"),
        ("new-without-attributes", "fold_in"),
        ("anonymous-unknown-items", "popular_fallback"),
    ],
)
def test_post_returns_the_record_the_stream_writes(client, api_db, streaming_model, who, strategy):
    products = streaming_model.product_codes
    if strategy == "features+fold_in" and streaming_model.kind != "hybrid":
        strategy = "fold_in"  # a published ALS model has no attribute vectors to start from
    body = {
        "known": event(streaming_model.customer_numbers[5], products[:3]),
        "new": event(99_000_001, products[10:14]),
        "new-without-attributes": event(99_000_002, products[10:14], city=None, country=None, credit_limit=None),
        "anonymous-unknown-items": event(None, ["NOT-A-PRODUCT"]),
    }[who]
    response = client.post("/recommendations", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["strategy"] == strategy and got["model_version"] == streaming_model.version
    assert (
        got["session_id"] == body["session_id"]
        and got["browsed_items"] == parse_event(json.dumps(body).encode()).browsed_codes
    )
    assert len(got["recommended_items"]) == 10
    expected = firehose_record(api_db, body)
    assert {k: v for k, v in got.items() if k != "processed_at"} == {
        k: v for k, v in expected.items() if k != "processed_at"
    }


def test_health_and_version(client, streaming_model):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["live_model"]["version"] == health.json()["model_pointer"]["version"]
    version = client.get("/version").json()
    assert version["model_version"] == health.json()["live_model"]["version"] and version["api_version"]


# ---- bad input ------------------------------------------------------------------------------------


def test_unknown_customer_product_and_path_are_404(client, streaming_model):
    body = assert_problem(
        client.get("/customers/99000002/recommendations"), 404, "customer 99000002", streaming_model.version
    )
    assert body["instance"] == "/customers/99000002/recommendations"
    assert_problem(client.get("/products/NO_SUCH_1/similar"), 404, "product NO_SUCH_1")
    assert_problem(client.get("/nothing-here"), 404)


@pytest.mark.parametrize(
    "path, params, fragment",
    [
        ("/customers/103/recommendations", {"k": 0}, "k:"),
        ("/customers/103/recommendations", {"k": 101}, "less than or equal to 100"),
        ("/customers/103/recommendations", {"k": "ten"}, "k:"),
        ("/customers/103/recommendations", {"exclude_rated": "maybe"}, "exclude_rated"),
        ("/customers/abc/recommendations", {}, "customerNumber"),
        ("/customers/-1/recommendations", {}, "customerNumber"),
        ("/customers/2147483648/recommendations", {}, "customerNumber"),
        ("/products/S10 1678;DROP/similar", {}, "productCode"),
        ("/products/S10_1678/similar", {"k": 1000}, "k:"),
    ],
)
def test_bad_parameters_are_400_before_any_query(client, path, params, fragment):
    body = assert_problem(client.get(path, params=params), 400, fragment)
    assert body["errors"]


def test_bad_bodies(client, streaming_model):
    assert_problem(
        client.post("/recommendations", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "not JSON",
    )
    assert_problem(client.post("/recommendations", json={"session_id": "x"}), 422, "missing field")
    assert_problem(
        client.post("/recommendations", json={**event(103, []), "customer_number": "103"}),
        422,
        "'customer_number' must be int",
    )
    assert_problem(client.post("/recommendations", json=[1, 2]), 422, "JSON object")
    # a number the database's INT cannot hold never reaches SQL (it would fail the whole request)
    assert_problem(client.post("/recommendations", json=event(2**40, ["S10_1678"])), 422, "must be 1..2,147,483,647")
    assert_problem(
        client.post("/recommendations", json=event(103, [], event_type="heartbeat")), 422, "nothing to serve"
    )
    assert_problem(client.post("/recommendations", json=event(None, [])), 422, "nothing to serve")


def lambda_environment(settings) -> dict:
    from recsys import contracts

    return {
        "PGHOST": settings.pg_host,
        "PGPORT": str(settings.pg_port),
        "PGUSER": settings.pg_user,
        "PGPASSWORD": settings.pg_password,
        "PGDATABASE": settings.pg_database,
        "RECSYS_ARTIFACTS_BUCKET": settings.artifacts_bucket,
        "AWS_ENDPOINT_URL": settings.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": settings.region,
        contracts.ENV_API_POOL_SIZE: "1",
    }


def test_known_customers_never_get_rated_items_and_stream_post_get_agree(
    api_db, client, streaming_model, streaming_zip, tmp_path
):
    """The customers who rated the most products (fewer unrated than k, and all but a few): the
    record the Lambda zip writes under awslambdaric, POST /recommendations and GET agree, hold no
    rated item (recommended or similar), hold exactly k items while k unrated exist, and say so
    (``fewer_than_k``) when they do not."""
    from recsys import contracts
    from recsys.local.firehose.invokers import unpack_zip
    from recsys.local.lambda_python import lambda_python
    from recsys.local.lambda_runtime import LocalLambda

    products = streaming_model.product_codes
    unrated = {c: len(products) - len(streaming_model.rated[c]) for c in streaming_model.customer_numbers}
    fewest = min(unrated, key=unrated.get)  # fewer unrated products than k (in the seeded source: none)
    all_but_a_few = min((c for c in unrated if unrated[c] >= 1), key=unrated.get)
    assert unrated[fewest] < 10 and 1 <= unrated[all_but_a_few] < len(products) // 4, (
        "needs customers who rated (nearly) every product"
    )
    bodies = {c: event(c, sorted(streaming_model.rated[c])[:2]) for c in (fewest, all_but_a_few)}
    firehose = {
        "invocationId": "i",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:1:deliverystream/x",
        "region": "us-east-1",
        "records": [
            {
                "recordId": str(c),
                "data": base64.b64encode(json.dumps(b).encode()).decode(),
                "approximateArrivalTimestamp": 0,
            }
            for c, b in bodies.items()
        ],
    }
    code = unpack_zip(streaming_zip, tmp_path / "code")
    with LocalLambda(
        code,
        contracts.LAMBDA_HANDLER,
        lambda_environment(api_db.settings),
        python=lambda_python(api_db.settings),
        log_file=tmp_path / "lambda.log",
    ) as function:
        result = function.invoke(json.dumps(firehose).encode())
    assert result.ok, result.error()
    streamed = {
        int(r["recordId"]): json.loads(base64.b64decode(r["data"])) for r in json.loads(result.payload)["records"]
    }

    for customer, body in bodies.items():
        rated, eligible = streaming_model.rated[customer], unrated[customer]
        record = streamed[customer]
        posted = client.post("/recommendations", json=body).json()
        got = client.get(f"/customers/{customer}/recommendations").json()
        assert record["strategy"] == "known_customer"
        assert {k: v for k, v in posted.items() if k != "processed_at"} == {
            k: v for k, v in record.items() if k != "processed_at"
        }
        assert codes(got["items"]) == codes(posted["recommended_items"])  # GET and POST agree
        assert len(posted["recommended_items"]) == min(10, eligible)
        assert posted["fewer_than_k"] is got["fewer_than_k"] is (eligible < 10)
        assert not set(codes(posted["recommended_items"])) & rated, "a rated item was recommended"
        assert not set(codes(posted["similar_items"])) & rated, "a rated item was listed as similar"


# ---- the database goes away and comes back --------------------------------------------------------


def test_database_down_is_503_and_the_api_recovers(client, api_db, streaming_model):
    customer = streaming_model.customer_numbers[0]
    assert client.get(f"/customers/{customer}/recommendations").status_code == 200
    api_db.stop()
    try:
        assert_problem(client.get(f"/customers/{customer}/recommendations"), 503, "pgvector unreachable")
        assert_problem(client.get(f"/products/{streaming_model.product_codes[0]}/similar"), 503)
        assert_problem(client.post("/recommendations", json=event(customer, streaming_model.product_codes[:2])), 503)
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"]["status"] == "failed"
        assert client.get("/version").json()["model_version"] is None
    finally:
        api_db.start()
    recovered = client.get(f"/customers/{customer}/recommendations")
    assert recovered.status_code == 200 and len(recovered.json()["items"]) == 10
    assert client.get("/health").json()["status"] == "ok"


# ---- the document ---------------------------------------------------------------------------------


def test_openapi_document_validates_and_describes_the_api(client):
    document = client.get("/openapi.json").json()
    validate(document)
    paths = document["paths"]
    assert set(paths) == {
        "/customers/{customerNumber}/recommendations",
        "/products/{productCode}/similar",
        "/recommendations",
        "/health",
        "/version",
    }
    recommendations = paths["/customers/{customerNumber}/recommendations"]["get"]
    k = next(p for p in recommendations["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"], k["schema"]["default"]) == (1, 100, 10)
    assert set(recommendations["responses"]) == {"200", "400", "404", "503"}
    assert list(recommendations["responses"]["404"]["content"]) == [PROBLEM]
    post = paths["/recommendations"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ActivityEvent")
    assert {"400", "422", "503"} <= set(post["responses"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


# ---- the same app from its Lambda zip -------------------------------------------------------------


@pytest.mark.slow  # builds the API zip and runs it under awslambdaric
@pytest.mark.environment("lambda-python3.13")
def test_api_zip_serves_function_url_events_under_the_lambda_runtime(api_db, client, streaming_model, tmp_path):
    """`recsys lambda-zip --api` output, unpacked and run by awslambdaric (as AWS runs it), answers a
    Function URL event like the uvicorn server does."""
    import zipfile
    from pathlib import Path

    from recsys import contracts
    from recsys.deploy.lambda_zip import API_LAMBDA, build_lambda_zip
    from recsys.local.lambda_python import lambda_python
    from recsys.local.lambda_runtime import LocalLambda

    report = build_lambda_zip(tmp_path / "build" / "api.zip", function=API_LAMBDA)
    names = zipfile.ZipFile(report.path).namelist()
    assert {
        "recsys/serving/api.py",
        "recsys/serving/api_handler.py",
        "fastapi/__init__.py",
        "mangum/__init__.py",
        "recsys/contracts.py",
    } <= set(names)
    code = tmp_path / "code"
    zipfile.ZipFile(report.path).extractall(code)
    settings = api_db.settings
    environment = lambda_environment(settings)
    event = json.loads((Path(__file__).parents[1] / "unit" / "events" / "function_url_request.json").read_text())
    customer = streaming_model.customer_numbers[3]
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/customers/{customer}/recommendations"
    with LocalLambda(
        code, contracts.API_HANDLER, environment, function_name="recsys-api", python=lambda_python(settings)
    ) as function:
        result = function.invoke(json.dumps(event).encode())
    assert result.ok, result.payload
    response = json.loads(result.payload)
    assert response["statusCode"] == 200 and response["headers"]["content-type"] == "application/json"
    body = json.loads(base64.b64decode(response["body"]) if response["isBase64Encoded"] else response["body"])
    assert body == client.get(f"/customers/{customer}/recommendations", params={"k": 5}).json()


# ---- the document against the server: property-based --------------------------------------------

HOSTILE_BODIES = [
    "[" * 100_000,
    '{"a":' * 50_000,
    '{"session_id": "s", "customer_number": 1, "event_time": '
    '"2026-11-26T14:00:00Z", "browse_history": ' + "[" * 20_000 + "]" * 20_000 + "}",
    '{"session_id": "s", "customer_number": ' + "9" * 4301 + "}",
    " " * (2 * 1024 * 1024),
]
HOSTILE_INTEGERS = ["1_03", "+103", " 103", "103.0", "1e3", "-0"]


def test_every_operation_answers_as_documented(api_url):
    """schemathesis generates requests from the OpenAPI document and checks every answer: no server
    error but the documented 503, documented status codes, content types and response schemas.
    Besides the schema-valid requests: schemathesis's negative mode (requests the schema forbids,
    which must be refused with a documented 4xx), and the hostile cases of docs/api.md ("Bounded
    requests": nested bodies, a 4,301-digit integer, a body over the limit, integers that are not
    plain digits), each as a case of the document.

    Not checked: that every schema-valid body is accepted. The stream's own validator
    (``parse_event``) decides what an event is, and it is stricter than JSON Schema can say (JSON
    Schema calls ``52.0`` an integer; the validator wants ``52``): such bodies get the documented 422.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    assert len(operations) == 5
    for label, operation in operations.items():
        takes_input = label not in ("GET /health", "GET /version")  # nothing to make negative
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 2 if takes_input else 1]:

            @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def answers_as_documented(case):
                case.call_and_validate(excluded_checks=[positive_data_acceptance])

            answers_as_documented()

    post = operations["POST /recommendations"]
    for body in HOSTILE_BODIES:
        response = post.Case(body=body.encode(), media_type="application/json").call_and_validate(
            excluded_checks=[positive_data_acceptance]
        )
        assert response.status_code in (400, 413), response.text[:200]
    customer = operations["GET /customers/{customerNumber}/recommendations"]
    for text in HOSTILE_INTEGERS:
        for case in (
            customer.Case(path_parameters={"customerNumber": text}),
            customer.Case(path_parameters={"customerNumber": 103}, query={"k": text}),
        ):
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            assert response.status_code == 400, (text, response.text[:200])
