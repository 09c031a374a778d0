"""The auditor workspace in a real browser: headless Chromium (Debian's `chromium`, driven through
its `chromedriver` by selenium) signs in with a pasted token, reads a contract's timeline, asks
for a diff and opens a statement whose lines are proven against a signed checkpoint. Screenshots
land in var/screenshots/ (a laptop's 1366 × 900).

Without Chromium the test fails, saying how to install it: it never skips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from channel_domain.store import checkpoints
from tests.api.flows import ERP, approved_partner, post, signed_contract
from tests.servers import InThread

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
INSTALL = "apt-get install -y chromium chromium-driver"


def browser_binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
        pytest.fail(f"the browser test needs Debian's Chromium on the PATH, and {' and '.join(missing)} "
                    f"{'are' if len(missing) > 1 else 'is'} not there: "
                    f"install it with `{INSTALL}` (.ci/run does this)", pytrace=False)
    return chromium, driver


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1366,900", "--lang=zh-CN", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def arrive(driver, url_part: str) -> None:
    """Until the page a click asked for has loaded (a click returns before the navigation ends)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(expected_conditions.url_contains(url_part))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_an_auditor_signs_in_reads_a_timeline_a_diff_and_a_proven_statement(api, database_url, tmp_path, browser):
    from selenium.webdriver.common.by import By

    partner = approved_partner(api, "retailer", name="华东渠道有限公司")
    contract = signed_contract(api, partner)  # versions 1 to 4
    for n, (amount, day) in enumerate((("60000.00", "2026-03-02"), ("40000.00", "2026-03-09"))):
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": f"SO-{n + 1}", "amount": amount, "sold_on": day},
             ERP, **{"X-Correlation-Id": f"erp-batch-{n + 1}"})
    api.catch_up()
    key = checkpoints.create_key_file(tmp_path / "checkpoint.pem")
    checkpoints.make(api.department.event_recorder.datastore, key)
    token = api.token("auditor-1", "auditor")

    with InThread(database_url) as base:
        # A link to a timeline, opened without a session: the sign-in form first, then the page.
        browser.get(f"{base}/audit/records/{contract}")
        assert "/audit/sign-in" in browser.current_url and token not in browser.current_url
        shot(browser, "01-sign-in")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "sign-in").click()
        arrive(browser, f"/audit/records/{contract}")
        assert browser.current_url == f"{base}/audit/records/{contract}", browser.find_element(By.TAG_NAME, "main").text
        assert token not in browser.current_url
        session = browser.get_cookie("cd_audit_session")
        assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["value"] != token
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "合同 Contract" in page and "华东渠道有限公司" in page
        versions = [e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "ol.timeline > li")]
        assert versions == ["v1", "v2", "v3", "v4", "v5", "v6"]
        assert "erp-batch-2" in page and "60000.00" in page
        shot(browser, "02-timeline")

        # The diff form in the record's header: versions 4 to 6, the two sales.
        browser.find_element(By.CSS_SELECTOR, ".diffform input[name=from]").send_keys("4")
        to = browser.find_element(By.CSS_SELECTOR, ".diffform input[name=to]")
        to.clear()
        to.send_keys("6")
        browser.find_element(By.CSS_SELECTOR, ".diffform button").click()
        arrive(browser, "/diff?")
        assert "/diff?from=4&to=6" in browser.current_url
        rows = {row.find_element(By.TAG_NAME, "th").text: [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in browser.find_elements(By.CSS_SELECTOR, "table.diff tbody tr")}
        assert rows["销售总额 Gross sales"][:2] == ["0.00", "100000.00"]
        assert rows["订单数 Orders"][:2] == ["0", "2"]
        assert "erp-batch-1" in rows["销售总额 Gross sales"][2] and "erp-batch-2" in rows["销售总额 Gross sales"][2]
        shot(browser, "03-diff")

        # The partner's statement, each line proven against the checkpoint signed above.
        browser.get(f"{base}/audit/records/{partner}")
        browser.find_element(By.LINK_TEXT, "2026-03").click()
        arrive(browser, "/audit/statements/")
        assert browser.current_url == f"{base}/audit/statements/{partner}/2026-03"
        proofs = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "table.lines td .status")]
        assert proofs == ["已验证 Verified", "已验证 Verified"]
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "应付合计 Total due\n3000.00" in page or "3000.00" in page  # 1 800.00 + 1 200.00
        shot(browser, "04-statement-proofs")

        # The request that signed the contract, from its event on the timeline: signing the
        # partner's first contract activated the partner, an event nested under the signing.
        browser.get(f"{base}/audit/records/{contract}")
        browser.find_element(By.CSS_SELECTOR, "#v4 .who a").click()
        arrive(browser, "/audit/requests/")
        nested = browser.find_elements(By.CSS_SELECTOR, "ul.causation > li > ul.causation > li")
        assert [item.find_element(By.TAG_NAME, "strong").text for item in nested] == ["Partner.Activated"]
        assert "Contract.Signed" in browser.find_element(By.TAG_NAME, "main").text
        shot(browser, "05-request")

        # Signing out.
        browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
        arrive(browser, "/audit/sign-in")
        assert browser.current_url == f"{base}/audit/sign-in"
        browser.get(f"{base}/audit/")
        assert "/audit/sign-in" in browser.current_url
