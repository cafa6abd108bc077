"""The demo page in a real browser (Debian's headless Chromium driven by Selenium with the packaged chromedriver:
nothing is downloaded at run time). It types a title, adds two items, recommends, waits for streamed reasoning and
k ranked rows, shows an API error in plain words, and takes screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import make_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("R2EC_SCREENSHOTS", "")) if os.environ.get("R2EC_SCREENSHOTS") else None
# docs/screenshots come from the same test on the demo bundle:
#   R2EC_PAGE_BUNDLE=~/.cache/r2ec/bundles/demo-smollm2-ml100k R2EC_SCREENSHOTS=docs/screenshots \
#   pytest tests/service/test_page.py
PAGE_BUNDLE = os.environ.get("R2EC_PAGE_BUNDLE")


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed (scripts/install.sh installs them)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> Path:
    path = (SHOTS or tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_build_a_history_and_watch_the_recommendations_arrive(browser, tiny_bundle, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    bundle = Path(PAGE_BUNDLE).expanduser() if PAGE_BUNDLE else tiny_bundle
    # The screenshots show what `make serve` serves (the default backend and dtype); the test alone, the reference.
    served = {"backend": "auto", "dtype": None} if PAGE_BUNDLE else {"default_reasoning_tokens": 24}
    srv = make_server(bundle, **served).start()
    try:
        assert httpx.get(srv.url + "/").headers["content-type"].startswith("text/html")
        d = browser
        wait = WebDriverWait(d, 300)
        d.get(srv.url + "/")
        wait.until(lambda drv: drv.find_element(By.ID, "model").text.startswith("Model "))
        assert not d.find_element(By.ID, "auth").is_displayed()  # no keys configured: no key field
        search = d.find_element(By.ID, "search")
        search.send_keys("star")  # titles are built from words like "Star"; the match is case-insensitive
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#search-results li button")) >= 2)
        Select(d.find_element(By.ID, "rating")).select_by_visible_text("5")
        buttons = d.find_elements(By.CSS_SELECTOR, "#search-results li button")
        buttons[0].click()
        buttons[1].click()
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#history li")) == 2)
        k = d.find_element(By.ID, "k")
        k.clear()
        k.send_keys("5")
        d.find_element(By.ID, "recommend").click()
        wait.until(lambda drv: drv.find_element(By.ID, "reasoning").text.strip() != "")
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#results li")) == 5)
        assert "generation" in d.find_element(By.ID, "timings").text
        assert "bundle" in d.find_element(By.ID, "timings").text
        _shot(d, tmp_path, "page-recommendations.png")

        # An unknown id goes to the API, which refuses it; the page says so in plain words.
        d.find_element(By.ID, "by-id").send_keys("no-such-item")
        d.find_element(By.ID, "add-id").click()
        d.find_element(By.ID, "recommend").click()
        error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
        assert "not accepted" in error.text and "no-such-item" in error.text
        _shot(d, tmp_path, "page-error.png")

        d.set_window_size(390, 900)  # phone width: one column, still usable
        _shot(d, tmp_path, "page-phone.png")
    finally:
        srv.stop()


def test_the_page_asks_for_a_key_when_v1_needs_one(browser, tiny_bundle, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = make_server(tiny_bundle, api_keys=["s3cret"]).start()
    try:
        assert httpx.get(srv.url + "/").status_code == 200  # the page itself stays public
        d = browser
        d.get(srv.url + "/")
        wait = WebDriverWait(d, 30)
        wait.until(lambda drv: drv.find_element(By.ID, "auth").is_displayed())
        key = d.find_element(By.ID, "api-key")
        key.send_keys("s3cret")
        d.find_element(By.ID, "search").click()  # leaving the field stores the key
        d.find_element(By.ID, "search").send_keys("night")
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#search-results li button")) >= 1)
    finally:
        srv.stop()


def test_item_search_is_paginated_and_case_insensitive(server):
    page = httpx.get(server.url + "/v1/items", params={"q": "STAR", "limit": 2}).json()
    assert page["limit"] == 2 and len(page["items"]) == 2 and page["total"] >= 2
    assert all("star" in it["title"].lower() for it in page["items"])
    rest = httpx.get(server.url + "/v1/items", params={"q": "star", "limit": 2, "offset": 2}).json()
    assert {i["item_id"] for i in rest["items"]}.isdisjoint({i["item_id"] for i in page["items"]})
    assert httpx.get(server.url + "/v1/examples").json() == {"examples": []}  # the tiny bundle carries none
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "q" in {p["name"] for p in spec["paths"]["/v1/items"]["get"]["parameters"]}
