"""The recommendations page in headless Chromium (Debian's chromium + chromium-driver via Selenium):
it loads, a customer can be picked, and what it shows matches the objects in S3."""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from recsys.core import aws
from recsys.core.db import connect_mysql
from recsys.local.aws_resources import ensure_bucket
from recsys.apps.web import create_app

pytestmark = pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs chromium-driver (make install)")

FUTURE = "2099-01-01T00:00:0{}Z"


@pytest.fixture(scope="module")
def web_settings(stack):
    """The stack with a recommendations bucket of this module's own (other tests deliver too)."""
    settings = dataclasses.replace(stack, recommendations_bucket="recsys-web-test-recommendations")
    ensure_bucket(settings, settings.recommendations_bucket)
    return settings


@pytest.fixture(scope="module")
def delivered(web_settings, seeded):
    """Two objects in Firehose's layout: customer 105 twice (the later one must be shown), 106 once."""
    stack = web_settings
    conn = connect_mysql(stack)
    with conn.cursor() as cur:
        cur.execute("SELECT productCode, productName, productLine FROM products ORDER BY productCode LIMIT 12")
        products = cur.fetchall()
    conn.close()
    codes = [p[0] for p in products]

    def record(session, customer, second, browsed, recommended):
        return {"session_id": session, "customer_number": customer, "model_version": "20991231T000000Z-feedbeef",
                "strategy": "known_customer", "browsed_items": browsed,
                "recommended_items": [{"product_code": c, "score": round(0.9 - i / 10, 4)}
                                      for i, c in enumerate(recommended)],
                "similar_items": [{"product_code": codes[11], "score": 0.5}],
                "processed_at": FUTURE.format(second)}

    first = [record("web-s1", 105, 1, [codes[0]], codes[1:4]), record("web-s2", 106, 2, [], codes[4:6])]
    latest = [record("web-s3", 105, 3, [codes[6], codes[7]], codes[8:11])]
    s3 = aws.client("s3", stack)
    bucket = stack.recommendations_bucket
    for key, records in (("2099/01/01/00/web-test-1", first), ("2099/01/01/00/web-test-2", latest)):
        body = "".join(json.dumps(r) + "\n" for r in records)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    s3.put_object(Bucket=bucket, Key="processing-failed/2099/01/01/00/x", Body=b'{"rawData": "eA=="}\n')
    return {"products": {p[0]: p for p in products}, "latest_105": latest[0]}


@pytest.fixture(scope="module")
def server(web_settings, delivered):
    app = create_app(web_settings)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _table(driver, table_id):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_index_lists_sessions_but_not_failed_records(browser, server):
    browser.get(server + "/")
    assert "Recent sessions" in browser.title
    sessions = [row[1] for row in _table(browser, "sessions")]
    assert {"web-s1", "web-s2", "web-s3"} <= set(sessions)
    assert sessions.index("web-s3") < sessions.index("web-s1")  # newest first


def test_pick_customer_shows_latest_session_matching_s3(browser, server, delivered):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server + "/")
    Select(browser.find_element(By.ID, "customer")).select_by_value("105")
    browser.find_element(By.ID, "show").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "customer-number"))
    assert browser.find_element(By.ID, "customer-number").text == "105"
    expected = delivered["latest_105"]
    assert browser.find_element(By.ID, "session-id").text == expected["session_id"]
    assert browser.find_element(By.ID, "model-version").text == expected["model_version"]
    products = delivered["products"]
    shown = _table(browser, "recommended")
    assert [row[2] for row in shown] == [i["product_code"] for i in expected["recommended_items"]]
    for row, item in zip(shown, expected["recommended_items"]):
        code, name, line = products[item["product_code"]]
        assert (row[1], row[3]) == (name, line)
        assert float(row[4]) == pytest.approx(item["score"], abs=1e-4)
    assert [row[0] for row in _table(browser, "browsed")] == [products[c][1] for c in expected["browsed_items"]]
    assert [row[1] for row in _table(browser, "earlier")] == ["web-s1"]


def test_unknown_customer_is_a_404(server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server + "/customer/999999")
    assert err.value.code == 404
