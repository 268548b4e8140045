"""The demo's flow in a real browser: headless Chromium driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when missing).
Selenium is given the local chromedriver and browser paths, and SE_OFFLINE is set, so
Selenium Manager never runs and nothing is downloaded. The demo runs under the gunicorn
recipe on a free port of 127.0.0.1 with its sessions in the test's tmp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from servers import free_port, gunicorn

PAGE_TIMEOUT = 30  # seconds a page may take to load on a loaded machine

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,800",
)


pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"{CHROMIUM} / {CHROMEDRIVER} missing (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"SECRET_KEY": "browser test key", "SESSION_DIR": str(tmp_path / "sessions")}
    with gunicorn(tmp_path, port, env, workers=1):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:  # installed (see pytestmark) but broken: a failure
        pytest.fail(f"Chromium is installed but could not be started: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def cart(driver: WebDriver) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#cart li")]


def page_loaded(driver: WebDriver) -> None:
    """Wait until the current document has finished loading."""
    WebDriverWait(driver, PAGE_TIMEOUT).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def click_and_wait(driver: WebDriver, button: str) -> None:
    """Click a form button and wait for the page it leads to (after the redirect).

    ``click()`` returns before the navigation ends; on a loaded machine the next lookup
    would otherwise meet the page being unloaded. For the same reason a button found
    just before Chromium swapped documents can be stale when clicked: it is looked up
    again once the page has loaded (the click itself never happened, so nothing is sent
    twice).
    """
    for attempt in range(3):
        page_loaded(driver)
        old_page = driver.find_element(By.TAG_NAME, "html")
        try:
            driver.find_element(By.ID, button).click()
            break
        except (StaleElementReferenceException, WebDriverException):
            if attempt == 2:
                raise
    WebDriverWait(driver, PAGE_TIMEOUT).until(lambda _: unloaded(old_page))
    page_loaded(driver)


def unloaded(element: WebElement) -> bool:
    """Whether ``element``'s document is gone: ``expected_conditions.staleness_of``, plus
    ChromeDriver's other answer while a navigation swaps documents (an "unhandled
    inspector error: Node with given id does not belong to the document", met in a CI run)."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def submit(driver: WebDriver, field: str, value: str, button: str) -> None:
    driver.find_element(By.ID, field).send_keys(value)
    click_and_wait(driver, button)


def session_cookie(driver: WebDriver) -> str | None:
    cookie = driver.get_cookie("session")
    return None if cookie is None else str(cookie["value"])


def test_demo_flow_in_chromium(browser: WebDriver, demo_url: str, tmp_path: Path) -> None:
    driver = browser
    driver.get(demo_url + "/")
    assert cart(driver) == ["(empty)"]
    assert session_cookie(driver) is None  # looking costs nothing: no session, no cookie

    submit(driver, "item", "apple", "add")
    assert text(driver, "flash") == "Added apple to your cart."
    assert cart(driver) == ["apple"]
    anonymous = session_cookie(driver)
    assert anonymous is not None

    submit(driver, "username", "Alice", "login")
    assert text(driver, "user") == "Logged in as Alice"
    assert text(driver, "flash") == "Welcome, Alice!"
    assert cart(driver) == ["apple"]  # regenerate() keeps the data ...
    logged_in = session_cookie(driver)
    assert logged_in not in (None, anonymous)  # ... under a new id

    submit(driver, "item", "pear", "add")
    assert text(driver, "flash") == "Added pear to your cart."
    assert cart(driver) == ["apple", "pear"]
    screenshot = tmp_path / "cart.png"
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    driver.refresh()
    page_loaded(driver)
    assert driver.find_elements(By.ID, "flash") == []
    assert text(driver, "user") == "Logged in as Alice"

    click_and_wait(driver, "logout")
    assert text(driver, "flash") == "You are logged out."
    assert driver.find_elements(By.ID, "user") == []
    assert cart(driver) == ["(empty)"]
    assert session_cookie(driver) is None
