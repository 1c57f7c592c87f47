"""The web console, driven in Debian's headless Chromium (chromium, chromium-driver) through Selenium, the
way a person uses it: sign in, upload through the file input, resume after a reload, import a URL, delete,
the operator view. Every view is photographed into docs/console/.

Nothing is downloaded: the browser and its driver are the installed ones, and the tests run on loopback.
"""

import base64
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from conftest import ALPHA_KEY, BETA_KEY, Server, make_client  # noqa: E402
from test_webhooks import Source  # noqa: E402  (a static file server on loopback)

# The screenshots of docs/console are taken here; a run rewrites them only when asked
# (FILEGATE_UPDATE_SCREENSHOTS=1), so that testing leaves the working tree as it was.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "console" if os.environ.get("FILEGATE_UPDATE_SCREENSHOTS")
         else Path(os.environ.get("TMPDIR", "/tmp")) / f"filegate-console-shots-{os.getpid()}")
ALPHA_KEY_ID = hashlib.sha256(ALPHA_KEY.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def server():
    s = Server({
        "FILEGATE_IMPORT_ALLOW_CIDRS": "127.0.0.1/32",
        "FILEGATE_ADMIN_KEYS": ALPHA_KEY_ID,
        "FILEGATE_MAX_FILE_BYTES": str(256 * 1024 * 1024),
    })
    yield s
    s.stop()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("FILEGATE_CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("FILEGATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, condition, timeout=30, message=""):
    # The files table is redrawn every few seconds: an element found before a redraw goes stale.
    waiting = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(lambda d: condition(d), message)


def by_id(driver, element_id):
    return driver.find_element(By.ID, element_id)


def sign_in(driver, server, key=ALPHA_KEY):
    driver.get(f"{server.url}/console")
    field = wait(driver, lambda d: d.find_element(By.ID, "api-key"))
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()


def row_of(driver, display_name):
    for row in driver.find_elements(By.CSS_SELECTOR, "#files tbody tr"):
        if row.find_element(By.CSS_SELECTOR, "td.name").text == display_name:
            return row
    return None


def file_rows(driver):
    """Every row of the files table at one instant: `{display name: (files/… name, [cell texts])}`."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#files tbody tr'))"
        ".map(r => [r.dataset.name, Array.from(r.cells).map(c => c.textContent)])")
    return {texts[0]: (name, texts) for name, texts in rows}


def click_in_row(driver, display_name, label):
    """Clicks a row's button, finding the row again if a redraw replaced it."""
    wait(driver, lambda d: row_of(d, display_name).find_element(By.XPATH, f".//button[text()='{label}']").click() or True)


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def severe_logs(driver, refusals_expected=False):
    """Errors the browser logged: script errors and CSP violations always count; a refused request counts
    unless the test caused one on purpose (Chromium logs every non-2xx fetch)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and not (refusals_expected and entry["source"] == "network")]


def test_the_page_is_locked_down_by_its_headers(server):
    with urllib.request.urlopen(f"{server.url}/console") as response:
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        page = response.read().decode()
    assert "<script>" not in page and "onclick" not in page and "style=" not in page, "nothing inline"
    assert "http://" not in page and "https://" not in page.replace("https://example.com/talk.mp4", ""), (
        "nothing from another origin"
    )


def test_sign_in_refuses_a_wrong_key_and_signs_out(server, browser):
    sign_in(browser, server, key="not-a-key-of-anyone")
    wait(browser, lambda d: "not valid" in by_id(d, "status").text)
    shot(browser, "sign-in")
    assert browser.execute_script("return sessionStorage.getItem('filegate.key')") is None
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "who").text == "Project alpha (operator)")
    assert browser.execute_script("return document.cookie") == ""
    by_id(browser, "sign-out").click()
    wait(browser, lambda d: by_id(d, "sign-in-view").is_displayed())
    assert browser.execute_script("return sessionStorage.length") == 0
    assert not severe_logs(browser, refusals_expected=True)


def test_two_files_uploaded_through_the_picker_become_active_with_the_server_s_digest(server, browser, tmp_path):
    paths = []
    for name, size in [("first.bin", 3 * 1024 * 1024), ("second.txt", 20_000)]:
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        paths.append(path)
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"))
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=upload]").click()
    by_id(browser, "file-input").send_keys("\n".join(str(p) for p in paths))
    wait(browser, lambda d: len([li for li in d.find_elements(By.CSS_SELECTOR, "#uploads li")
                                 if "Uploaded" in li.text]) == 2, message="both uploads finish")
    shot(browser, "upload")
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=files]").click()
    client = make_client(server, ALPHA_KEY)
    for path in paths:
        wait(browser, lambda d: path.name in file_rows(d) and file_rows(d)[path.name][1][3] == "ACTIVE")
        name, texts = file_rows(browser)[path.name]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert texts[6] == digest
        assert base64.b64decode(client.files.get(name=name).sha256_hash).hex() == digest
    shot(browser, "files")
    assert float(by_id(browser, "bytes-meter").get_attribute("value")) >= 3 * 1024 * 1024
    assert not severe_logs(browser)


def test_an_upload_resumes_after_a_reload_from_the_server_s_offset(server, browser, tmp_path):
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(64 * 1024 * 1024))
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"))
    # Slow the browser's uploads down, so that the reload lands mid-upload.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions",
                            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 8 * 1024 * 1024})
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=upload]").click()
    by_id(browser, "file-input").send_keys(str(path))
    url = wait(browser, lambda d: d.execute_script(
        "return Object.keys(sessionStorage).filter(k => k.startsWith('filegate.upload.')).map(k => sessionStorage[k])[0]"))

    def received():
        request = urllib.request.Request(url, method="POST",
                                         headers={"x-goog-api-key": ALPHA_KEY, "X-Goog-Upload-Command": "query"})
        with urllib.request.urlopen(request) as response:
            return int(response.headers["x-goog-upload-size-received"])

    wait(browser, lambda d: received() >= 16 * 1024 * 1024, timeout=60, message="two chunks committed")
    browser.refresh()
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"), message="still signed in")
    at_reload = received()
    assert 0 < at_reload < path.stat().st_size
    browser.execute_cdp_cmd("Network.emulateNetworkConditions",
                            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=upload]").click()
    by_id(browser, "file-input").send_keys(str(path))
    wait(browser, lambda d: "Resuming at" in d.find_element(By.CSS_SELECTOR, "#uploads li").text
         or "Uploaded" in d.find_element(By.CSS_SELECTOR, "#uploads li").text)
    item = wait(browser, lambda d: next((li for li in d.find_elements(By.CSS_SELECTOR, "#uploads li")
                                         if "Uploaded" in li.text), None), timeout=120)
    name = item.text.split("Uploaded: ")[1].split(",")[0]
    client = make_client(server, ALPHA_KEY)
    got = client.files.get(name=name)
    assert base64.b64decode(got.sha256_hash).hex() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert int(got.size_bytes) == path.stat().st_size
    request = urllib.request.Request(url, method="POST",
                                     headers={"x-goog-api-key": ALPHA_KEY, "X-Goog-Upload-Command": "query"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["x-goog-upload-status"] == "final", "the session from before the reload finished"
    print(f"resumed at {at_reload} of {path.stat().st_size} bytes")


def test_an_import_shows_its_progress_then_ready_or_its_error_in_words(server, browser, tmp_path):
    (tmp_path / "lecture.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    source = Source(str(tmp_path))
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"))
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=import]").click()
    for url in [f"{source.url}/lecture.bin", f"{source.url}/missing.bin"]:
        by_id(browser, "import-url").send_keys(url)
        browser.find_element(By.CSS_SELECTOR, "#import-form button[type=submit]").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#imports li")) >= 1)
    items = wait(browser, lambda d: [li.text for li in d.find_elements(By.CSS_SELECTOR, "#imports li")]
                 if all(("Ready" in t or "Failed" in t) for t in [li.text for li in d.find_elements(By.CSS_SELECTOR, "#imports li")])
                 and len(d.find_elements(By.CSS_SELECTOR, "#imports li")) == 2 else None)
    ready = next(t for t in items if "lecture.bin" in t)
    failed = next(t for t in items if "missing.bin" in t)
    assert "Ready: 2.0 MiB" in ready, ready
    assert "404" in failed and "source_http_status" in failed, failed
    shot(browser, "import")
    source.server.shutdown()


def test_a_hostile_name_is_shown_as_text_and_delete_asks_first(server, browser):
    hostile = '<img src=x onerror="document.title=\'pwned\'">'
    client = make_client(server, ALPHA_KEY)
    uploaded = client.files.upload(file=__file__, config={"mime_type": "text/plain", "display_name": hostile})
    sign_in(browser, server)
    wait(browser, lambda d: hostile in file_rows(d))
    assert not browser.find_elements(By.CSS_SELECTOR, "#files img"), "no element was made from the name"
    assert browser.title != "pwned"
    click_in_row(browser, hostile, "Delete")
    browser.switch_to.alert.dismiss()
    time.sleep(0.5)
    assert hostile in file_rows(browser), "dismissing the question keeps the file"
    click_in_row(browser, hostile, "Delete")
    browser.switch_to.alert.accept()
    wait(browser, lambda d: hostile not in file_rows(d))
    with pytest.raises(Exception):
        client.files.get(name=uploaded.name)
    assert not severe_logs(browser)


def test_the_operator_creates_and_revokes_a_key(server, browser):
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "operator-tab").is_displayed())
    by_id(browser, "operator-tab").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#projects tbody tr"))
    by_id(browser, "key-project").send_keys("gamma")
    by_id(browser, "key-label").send_keys("made in the console")
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    text = wait(browser, lambda d: by_id(d, "new-key").text if by_id(d, "new-key").is_displayed() else None)
    new_key = text.rsplit(": ", 1)[1]
    key_id = text.split("(id ")[1].split(")")[0]
    request = urllib.request.Request(f"{server.url}/v1beta/files", headers={"x-goog-api-key": new_key})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    shot(browser, "operator")
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"#keys tr[data-id='{key_id}']"))
    row.find_element(By.XPATH, ".//button[text()='Revoke']").click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: not d.find_element(By.CSS_SELECTOR, f"#keys tr[data-id='{key_id}']")
         .find_elements(By.XPATH, ".//button[text()='Revoke']"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400, "a revoked key is no key (Google's 400 API_KEY_INVALID)"


def test_a_key_that_is_not_an_operator_s_sees_no_operator_view(server, browser):
    sign_in(browser, server, key=BETA_KEY)
    wait(browser, lambda d: by_id(d, "who").text == "Project beta")
    assert not by_id(browser, "operator-tab").is_displayed()
    request = urllib.request.Request(f"{server.url}/console/api/keys", headers={"x-goog-api-key": BETA_KEY})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 403


def test_it_fits_a_phone_and_follows_the_dark_scheme(server, browser):
    browser.set_window_size(360, 800)
    sign_in(browser, server)
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"))
    time.sleep(0.5)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
    shot(browser, "files-360px")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 23)", background
    shot(browser, "files-dark")


def test_download_saves_the_bytes_through_a_link_that_needs_no_key(server, browser, tmp_path):
    saved = tmp_path / "downloads"
    saved.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(saved)})
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF-1.4\n" + os.urandom(300_000))
    client = make_client(server, ALPHA_KEY)
    client.files.upload(file=str(source), config={"mime_type": "application/pdf", "display_name": "report.pdf"})
    sign_in(browser, server)
    wait(browser, lambda d: "report.pdf" in file_rows(d))
    click_in_row(browser, "report.pdf", "Download")
    done = wait(browser, lambda d: [p for p in saved.iterdir() if not p.name.endswith(".crdownload")], timeout=30)
    assert done[0].name == "report.pdf"
    assert done[0].read_bytes() == source.read_bytes()
    assert not severe_logs(browser)


def test_keyboard_alone_signs_in_and_moves_between_views(server, browser):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{server.url}/console")
    active = lambda d: d.switch_to.active_element.get_attribute("id")  # noqa: E731
    wait(browser, lambda d: active(d) == "api-key", message="the key field has the focus at once")
    browser.switch_to.active_element.send_keys(ALPHA_KEY + Keys.ENTER)
    wait(browser, lambda d: by_id(d, "who").text.startswith("Project alpha"))
    tab = browser.find_element(By.CSS_SELECTOR, ".tab[data-view=import]")
    tab.send_keys(Keys.ENTER)
    wait(browser, lambda d: active(d) == "import-title", message="the chosen view's heading takes the focus")
    assert tab.get_attribute("aria-current") == "page"
    for field in browser.find_elements(By.CSS_SELECTOR, "input"):
        field_id = field.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{field_id}']"), f"#{field_id} has a label"


def test_the_key_never_reaches_the_server_log(server):
    log = Path(server.log.name).read_text()
    assert "listening on" in log or "answered" in log
    assert ALPHA_KEY not in log and BETA_KEY not in log
