"""The recommendations page in headless Chromium (Debian's chromium + chromium-driver via Selenium):
it loads, a customer or product can be picked, and what it shows matches the recommendations API
(answered by a real server over the live model) and the objects delivered to S3. Plus the feed
reader's cache and bad lines, and `recsys web` stopping on SIGINT as a background job."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from tests.support.environment import needs
from werkzeug.serving import make_server

from recsys.apps.web import FeedReader, create_app
from recsys.core import aws
from recsys.core.db import connect_mysql
from recsys.local.aws_resources import ensure_bucket
from recsys.local.stack import free_port

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

needs_browser = needs(
    "chromium-driver", shutil.which("chromedriver") is not None, "needs chromium-driver (make install)"
)

FUTURE = "2099-01-01T00:00:0{}Z"
RECSYS = str(Path(sys.executable).with_name("recsys"))


@pytest.fixture(scope="module")
def web_settings(stack, api_url):
    """The stack with a recommendations bucket of this module's own (other tests deliver too),
    pointed at the API test server."""
    settings = dataclasses.replace(stack, recommendations_bucket="recsys-web-test-recommendations", api_url=api_url)
    ensure_bucket(settings, settings.recommendations_bucket)
    return settings


@pytest.fixture(scope="module")
def delivered(web_settings, seeded):
    """Objects in Firehose's layout: customer 105 twice (the later one must be shown), 106 once, and
    an object with lines that are not records (a bad upload must not take the page down)."""
    stack = web_settings
    conn = connect_mysql(stack)
    with conn.cursor() as cur:
        cur.execute("SELECT productCode, productName, productLine FROM products ORDER BY productCode")
        products = cur.fetchall()
    conn.close()
    codes = [p[0] for p in products]

    def record(session, customer, second, browsed, recommended):
        return {
            "session_id": session,
            "customer_number": customer,
            "model_version": "20991231T000000Z-feedbeef",
            "strategy": "known_customer",
            "browsed_items": browsed,
            "recommended_items": [
                {"product_code": c, "score": round(0.9 - i / 10, 4)} for i, c in enumerate(recommended)
            ],
            "similar_items": [{"product_code": codes[11], "score": 0.5}],
            "processed_at": FUTURE.format(second),
        }

    first = [record("web-s1", 105, 1, [codes[0]], codes[1:4]), record("web-s2", 106, 2, [], codes[4:6])]
    latest = [record("web-s3", 105, 3, [codes[6], codes[7]], codes[8:11])]
    s3 = aws.client("s3", stack)
    bucket = stack.recommendations_bucket
    for key, records in (("2099/01/01/00/web-test-1", first), ("2099/01/01/00/web-test-2", latest)):
        body = "".join(json.dumps(r) + "\n" for r in records)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    bad = b"not json at all\n" + json.dumps(record("web-s4", 107, 4, [], codes[:2])).encode() + b"\n[1, 2]\n"
    s3.put_object(Bucket=bucket, Key="2099/01/01/00/web-test-bad", Body=bad)
    s3.put_object(Bucket=bucket, Key="processing-failed/2099/01/01/00/x", Body=b'{"rawData": "eA=="}\n')
    return {"products": {p[0]: p for p in products}, "latest_105": latest[0]}


def _serve(app):
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def server(web_settings, delivered):
    httpd = _serve(create_app(web_settings))
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def api(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _table(driver, table_id):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def _pick(driver, server, field: str, value: str, button: str, wait_for: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server + "/")
    driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.ID, button).click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, wait_for))


def _assert_items_match(shown, items, products):
    assert [row[2] for row in shown] == [i["product_code"] for i in items]
    for row, item in zip(shown, items, strict=True):
        _, name, line = products[item["product_code"]]
        assert (row[1], row[3]) == (name, line)
        assert float(row[4]) == pytest.approx(item["score"], abs=1e-4)


@needs_browser
def test_index_lists_sessions_skips_bad_lines_and_failed_records(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    assert "Recent sessions" in browser.title
    sessions = [row[1] for row in _table(browser, "sessions")]
    assert {"web-s1", "web-s2", "web-s3", "web-s4"} <= set(sessions)  # the good line of the bad object too
    assert sessions.index("web-s3") < sessions.index("web-s1")  # newest first
    assert browser.find_element(By.ID, "bad-lines").text == "2"


@needs_browser
def test_customer_page_shows_the_api_and_the_latest_session(browser, server, delivered, api):
    from selenium.webdriver.common.by import By

    _pick(browser, server, "customer", "105", "show", "customer-number")
    assert browser.find_element(By.ID, "customer-number").text == "105"
    live = api.get("/customers/105/recommendations", params={"k": 10}).json()
    assert browser.find_element(By.ID, "live-model-version").text == live["model_version"]
    products = delivered["products"]
    _assert_items_match(_table(browser, "recommended"), live["items"], products)
    expected = delivered["latest_105"]
    assert browser.find_element(By.ID, "session-id").text == expected["session_id"]
    assert browser.find_element(By.ID, "model-version").text == expected["model_version"]
    assert [row[0] for row in _table(browser, "browsed")] == [products[c][1] for c in expected["browsed_items"]]
    _assert_items_match(_table(browser, "stream-recommended"), expected["recommended_items"], products)
    anchor = expected["browsed_items"][0]
    assert browser.find_element(By.ID, "similar-anchor").get_attribute("data-code") == anchor
    _assert_items_match(_table(browser, "similar"), api.get(f"/products/{anchor}/similar").json()["items"], products)
    assert [row[1] for row in _table(browser, "earlier")] == ["web-s1"]


@needs_browser
def test_any_customer_of_the_model_has_a_page(browser, server, delivered, api, streaming_model):
    """A customer who never sent an event: recommendations and similar products from the API."""
    from selenium.webdriver.common.by import By

    customer = next(c for c in streaming_model.customer_numbers if c not in (105, 106, 107))
    _pick(browser, server, "customer", str(customer), "show", "customer-number")
    live = api.get(f"/customers/{customer}/recommendations").json()
    _assert_items_match(_table(browser, "recommended"), live["items"], delivered["products"])
    assert browser.find_element(By.ID, "no-sessions")
    top = live["items"][0]["product_code"]
    assert browser.find_element(By.ID, "similar-anchor").get_attribute("data-code") == top
    _assert_items_match(
        _table(browser, "similar"), api.get(f"/products/{top}/similar").json()["items"], delivered["products"]
    )


@needs_browser
def test_product_page_shows_similar_products(browser, server, delivered, api, streaming_model):
    from selenium.webdriver.common.by import By

    code = streaming_model.product_codes[4]
    _pick(browser, server, "product", code, "show-product", "product-code")
    assert browser.find_element(By.ID, "product-code").text == code
    _assert_items_match(
        _table(browser, "similar"), api.get(f"/products/{code}/similar").json()["items"], delivered["products"]
    )


def test_unknown_customer_and_product_are_404(server):
    for path in ("/customer/999999", "/product/NO_SUCH_CODE"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server + path)
        assert err.value.code == 404


def test_api_down_is_said_on_the_page(web_settings, delivered):
    """With nothing listening at RECSYS_API_URL the customer page still shows the stream's session."""
    httpd = _serve(create_app(dataclasses.replace(web_settings, api_url=f"http://127.0.0.1:{free_port()}")))
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/customer/105").read().decode()
    finally:
        httpd.shutdown()
    assert 'id="api-error"' in page and "recommendations API not reachable" in page and "web-s3" in page


def test_feed_reader_reads_each_object_once(web_settings, delivered):
    """A page view fetches only objects that are new since the previous one (issue 13 item 10)."""
    reader = FeedReader(web_settings)
    first = reader.read()
    assert first.objects_read == 3 and first.objects_cached == 0 and first.bad_lines == 2
    again = reader.read()
    assert (again.objects_read, again.objects_cached) == (0, 3)
    assert [s.session_id for s in again.sessions] == [s.session_id for s in first.sessions]
    s3 = aws.client("s3", web_settings)
    key = "2099/01/01/01/web-test-new"
    s3.put_object(
        Bucket=web_settings.recommendations_bucket,
        Key=key,
        Body=json.dumps({"session_id": "web-s5", "customer_number": 108, "processed_at": FUTURE.format(5)}).encode()
        + b"\n",
    )
    try:
        third = reader.read()
        assert (third.objects_read, third.objects_cached) == (1, 3) and third.sessions[0].session_id == "web-s5"
    finally:
        s3.delete_object(Bucket=web_settings.recommendations_bucket, Key=key)
    assert reader.read().objects_read == 0  # the deleted object is forgotten, nothing re-read


@pytest.mark.parametrize("command", [["web"], ["api", "--no-access-log"]])
def test_background_server_stops_on_sigint(web_settings, command):
    """A shell starts a background job with SIGINT ignored; `kill -INT` must still stop the server."""
    port = free_port()
    env = {**os.environ, **web_settings.as_env()}
    # as a shell does for `cmd &`: SIGINT ignored, then exec (same process, so the handle is the server's)
    process = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$@"', "sh", RECSYS, *command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/{'healthz' if command == ['web'] else 'version'}", timeout=2
                )
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, f"recsys {command[0]} exited with {process.returncode}"
                time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
