"""The demo's flow in a real browser: headless Chromium driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when missing).
Selenium is given the local chromedriver and browser paths, and SE_OFFLINE is set, so
Selenium Manager never runs and nothing is downloaded. The demo runs under the gunicorn
recipe on a free port of 127.0.0.1 with its sessions in the test's tmp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def demo_server(tmp_path: Path, workers: int) -> Iterator[str]:
    port = free_port()
    env = {"SECRET_KEY": "browser test key", "SESSION_DIR": str(tmp_path / "sessions")}
    with gunicorn(tmp_path, port, env, workers=workers):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    with demo_server(tmp_path, workers=1) as url:
        yield url


@pytest.fixture
def demo_on_workers(tmp_path: Path) -> Iterator[str]:
    """As ``./scripts/demo`` runs it: a revocation in one worker must hold in all three."""
    with demo_server(tmp_path, workers=3) as url:
        yield url


@contextmanager
def chromium(profile: Path, user_agent: str | None = None) -> Iterator[WebDriver]:
    """A headless Chromium with its own profile (cookies) in ``profile``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if user_agent is not None:
        options.add_argument(f"--user-agent={user_agent}")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:  # installed (see pytestmark) but broken: a failure
        pytest.fail(f"Chromium is installed but could not be started: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    monkeypatch.setenv("SE_OFFLINE", "true")
    with chromium(tmp_path / "profile") as driver:
        yield driver


LAPTOP = "Test browser on a laptop"  # the user agents of two browsers of one user
PHONE = "Test browser on a phone"


@pytest.fixture
def laptop_and_phone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WebDriver, WebDriver]]:
    """Two browsers with separate profiles, hence separate cookies: two devices."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    with (
        chromium(tmp_path / "laptop", LAPTOP) as laptop,
        chromium(tmp_path / "phone", PHONE) as phone,
    ):
        yield laptop, phone


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


NETWORK = "127.0.0.0/24"  # what a login from 127.0.0.1 records of the address


def log_in(driver: WebDriver, url: str, name: str) -> None:
    driver.get(url + "/")
    submit(driver, "username", name, "login")
    assert text(driver, "user") == f"Logged in as {name}"


def logged_out(driver: WebDriver) -> bool:
    """Whether the page shows the login form and no user."""
    return not driver.find_elements(By.ID, "user") and bool(driver.find_elements(By.ID, "login"))


def sessions_listed(driver: WebDriver) -> list[tuple[str, str, bool]]:
    """The "Your sessions" table: (device, network, this device?) per session."""
    return [
        (
            row.find_element(By.CLASS_NAME, "device").text,
            row.find_element(By.CLASS_NAME, "network").text,
            bool(row.find_elements(By.CLASS_NAME, "current")),
        )
        for row in driver.find_elements(By.CSS_SELECTOR, "#sessions tr.session")
    ]


def revoke_button(driver: WebDriver, device: str) -> str:
    """The id of the button that logs out the session of ``device``."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#sessions tr.session")
    (row,) = [row for row in rows if row.find_element(By.CLASS_NAME, "device").text == device]
    return str(row.find_element(By.CLASS_NAME, "revoke").get_attribute("id"))


def test_your_sessions_page_logs_out_another_browser(
    laptop_and_phone: tuple[WebDriver, WebDriver], demo_on_workers: str
) -> None:
    laptop, phone = laptop_and_phone
    url = demo_on_workers
    log_in(laptop, url, "Alice")
    log_in(phone, url, "Alice")

    click_and_wait(laptop, "sessions-link")
    assert sessions_listed(laptop) == [(LAPTOP, NETWORK, True), (PHONE, NETWORK, False)]
    click_and_wait(laptop, revoke_button(laptop, PHONE))
    assert text(laptop, "flash") == "That session is logged out."
    assert sessions_listed(laptop) == [(LAPTOP, NETWORK, True)]

    phone.refresh()  # its next request, whichever worker serves it
    page_loaded(phone)
    assert logged_out(phone)
    laptop.get(url + "/")
    assert text(laptop, "user") == "Logged in as Alice"

    submit(phone, "username", "Alice", "login")  # the phone logs in again ...
    click_and_wait(phone, "sessions-link")
    assert sessions_listed(phone) == [(LAPTOP, NETWORK, False), (PHONE, NETWORK, True)]
    click_and_wait(phone, "revoke-others")  # ... and logs out everywhere else
    assert text(phone, "flash") == "Logged out everywhere else: 1 other session(s) ended."
    assert sessions_listed(phone) == [(PHONE, NETWORK, True)]

    laptop.refresh()
    page_loaded(laptop)
    assert logged_out(laptop)
    laptop.get(url + "/sessions")  # the page is for logged-in users only
    assert text(laptop, "flash") == "Log in to see your sessions."
    assert logged_out(laptop)
