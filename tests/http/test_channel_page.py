"""The channel entry's H5 page in headless Chromium (Debian's ``chromium``, driven by
Playwright): a resident logs in, claims both cards, binds them, and the page shows the
fused code, which refreshes on its own; a hospital terminal verifies the code read off
the page and gets both identities."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sdk import ChannelClient, RunningStack, SdkError, start_in_thread
from tests.conftest import World, seeded_world
from tests.stack import make_test_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install "
    "chromium); .ci/run installs it")
REFRESH_S = 5  # the stack's code validity for this test, so the refresh shows quickly


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[RunningStack, World]]:
    settings = make_test_settings(tmp_path_factory.mktemp("var"),
                                  dynamic_code_validity_s=REFRESH_S)
    stack = start_in_thread(settings)
    yield stack, seeded_world(stack, residents=5)
    stack.stop()


def logged_in(browser, stack: RunningStack, world: World, person, height: int = 900):
    """A phone-sized page of the entry, the resident logged in with the SMS code."""
    page = browser.new_page(viewport={"width": 420, "height": height})
    page.goto(f"{stack.url}/channel/")
    page.fill("#id-number", person.id_number)
    page.fill("#name", person.name)
    page.click("#send-btn")
    page.wait_for_selector("#otp-step:not(.hidden)")
    page.fill("#otp", world.admin.login_code(person.phone))  # what the phone shows
    page.click("#login-btn")
    page.wait_for_selector("#cards:not(.hidden)")
    return page


def launch(pw):
    """Debian's headless Chromium under Playwright."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def shot(browser, page, path: Path) -> None:
    """The page said nothing went wrong; its full screenshot (looked at) is kept."""
    assert page.text_content("#error") == ""
    page.screenshot(path=str(path), full_page=True)
    browser.close()
    assert path.stat().st_size > 10_000


def test_resident_claims_binds_and_shows_the_fused_code(live, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    stack, world = live
    person = world.residents[0]
    with sync_playwright() as pw:
        browser = launch(pw)
        page = logged_in(browser, stack, world, person)
        page.click("#claim-btn")
        page.wait_for_function("document.getElementById('code-kind').textContent !== ''")
        assert page.text_content("#essc") != "-"
        assert page.text_content("#binding") == "not bound"
        assert page.text_content("#code-kind") == "dynamic"  # the EHC's own code until bound
        page.click("#bind-btn")
        page.wait_for_function("document.getElementById('code-kind').textContent === 'fused'")
        assert page.text_content("#binding") == "bound"
        assert page.locator("#code-svg svg").count() == 1
        assert page.text_content("#refresh-s") == str(REFRESH_S)
        first = page.text_content("#code-text")
        page.screenshot(path=str(tmp_path / "channel.png"))
        # the page refreshes the code by itself
        page.wait_for_function(
            f"document.getElementById('code-text').textContent !== {first!r}",
            timeout=(REFRESH_S + 5) * 1000)
        shown = page.text_content("#code-text")
        assert page.text_content("#error") == ""
        # the resident lets another app in, sees it, and revokes it
        other_app = world.admin.add_shared_app("a health app")
        page.fill("#grant-app", other_app["app_key"])
        page.select_option("#grant-scope", "codes")
        page.click("#grant-btn")
        page.wait_for_function("document.getElementById('grant-code').textContent !== ''")
        codes = (page.text_content("#grant-code") or "").split(": ", 1)[1]
        ehc_code = dict(part.split(" ") for part in codes.split(", "))["ehc"]
        with ChannelClient(stack.url, other_app["app_key"], other_app["app_secret"]) as app:
            granted = app.exchange_grant(ehc_code)
            assert granted["scope"] == "codes"
            assert app.qrcode(granted["card_id"])["kind"] == "dynamic"
            page.click("#grants-refresh-btn")
            page.wait_for_selector(f"button.revoke[data-app='{other_app['app_key']}']")
            assert "(codes)" in (page.text_content("#grant-list") or "")
            page.click(f"button.revoke[data-app='{other_app['app_key']}']")
            page.wait_for_function("document.querySelectorAll('button.revoke').length === 0")
            with pytest.raises(SdkError) as info:
                app.qrcode(granted["card_id"])
            assert info.value.code == "CARD_NOT_FOUND"
        assert page.text_content("#error") == ""
        # a wrong name is refused with the server's code on the page
        other = browser.new_page()
        other.goto(f"{stack.url}/channel/")
        other.fill("#id-number", person.id_number)
        other.fill("#name", person.name + "某")
        other.click("#send-btn")  # the same answer as for the right name: nothing told
        other.wait_for_selector("#otp-step:not(.hidden)")
        assert other.text_content("#error") == ""
        other.fill("#otp", "123456")
        other.click("#login-btn")
        other.wait_for_function("document.getElementById('error').textContent !== ''")
        # a sentence for people, not the server's code (kept in data-code for support)
        message = other.text_content("#error") or ""
        assert "code is not right" in message and "LOGIN_REFUSED" not in message
        assert other.get_attribute("#error", "data-code") == "LOGIN_REFUSED"
        browser.close()
    assert (tmp_path / "channel.png").stat().st_size > 5_000
    answer = world.term_a.verify(shown)
    assert answer["code_kind"] == "fused" and answer["partial"] is False
    assert answer["name"] == person.name and answer["essc"]["ec_token"]
    assert answer["essc"]["region"] == answer["essc"]["ec_token"][:6]


def test_the_page_speaks_to_people(live, tmp_path: Path) -> None:
    """A malformed ID number and someone without insurance get sentences, not codes; the
    page names its CJK font, labels every field and announces its errors."""
    from playwright.sync_api import sync_playwright

    from services.sdk import generate_residents

    stack, world = live
    uninsured = next(iter(generate_residents(1, seed=4242)))
    world.admin.add_residents([{"id_type": "01", "id_number": uninsured.id_number,
                                "name": uninsured.name, "phone": uninsured.phone}])
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 420, "height": 900})
        page.goto(f"{stack.url}/channel/")
        style = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "Noto Sans CJK SC" in style
        assert page.get_attribute("#error", "role") == "alert"
        for field in ("#id-number", "#name", "#otp", "#grant-app"):  # inside their labels
            assert page.evaluate(f"document.querySelector('{field}').labels.length") == 1
        page.fill("#id-number", "33010619900101123")  # 17 characters
        page.fill("#name", uninsured.name)
        page.click("#send-btn")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert "ID number" in (page.text_content("#error") or "")
        assert not any(c in (page.text_content("#error") or "") for c in ("INVALID", "_"))
        page.fill("#id-number", uninsured.id_number)
        page.click("#send-btn")
        page.wait_for_selector("#otp-step:not(.hidden)")
        page.fill("#otp", world.admin.login_code(uninsured.phone))
        page.click("#login-btn")
        page.wait_for_selector("#cards:not(.hidden)")
        page.click("#claim-btn")
        page.wait_for_selector("#no-essc:not(.hidden)")
        assert "no medical insurance card" in (page.text_content("#no-essc") or "")
        assert page.is_hidden("#bind-btn") and page.text_content("#error") == ""
        page.screenshot(path=str(tmp_path / "uninsured.png"))
        browser.close()


def test_the_phone_is_the_kiosk(live, tmp_path: Path, monkeypatch) -> None:
    """On the page: free slots of a session, a booking, a cancellation and a booking
    again, the place in the queue once the desk has checked the code in, the lab's report;
    a wrong session number gets a sentence. The hospital's clock is set by the test."""
    from datetime import date

    from playwright.sync_api import sync_playwright

    import services.hospital.schedule as schedule_module
    from services.sdk import HospitalClient

    day = date(2031, 5, 6)
    monkeypatch.setattr(schedule_module, "now_cst", lambda: (day, 7 * 60 + 50))
    stack, world = live
    person = world.residents[2]
    hospital = HospitalClient(stack.url, stack.admin_token)
    hospital.add_department("0202", "儿科 paediatrics")
    hospital.add_doctor("kiosk1", "0202", "陈医生")
    sid = hospital.add_session("kiosk1", day.isoformat(), "08:00", "09:00", per_slot=2,
                               walk_in_share=0.5)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = logged_in(browser, stack, world, person, height=1100)
        page.click("#claim-btn")
        page.wait_for_selector("#kiosk:not(.hidden)")
        page.fill("#kiosk-session", "99999")
        page.click("#slots-btn")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert "no such session" in (page.text_content("#error") or "")
        page.fill("#kiosk-session", str(sid))
        page.click("#slots-btn")
        page.wait_for_selector("button.book")
        assert page.locator("button.book").count() == 4  # 08:00 ... 08:45, one each free
        page.click("button.book >> nth=1")  # 08:15
        page.wait_for_selector("#booking-list li[data-state='booked']")
        assert "08:15: booked" in (page.text_content("#booking-list") or "")
        page.click("button.cancel")
        page.wait_for_selector("#booking-list li[data-state='cancelled']")
        page.click("#slots-btn")
        page.wait_for_selector("button.book")
        page.click("button.book >> nth=0")  # 08:00
        page.wait_for_selector("#booking-list li[data-state='booked']")
        # at the department's desk: the code read off the page is scanned, then checked in
        shown = page.text_content("#code-text") or ""
        scanned = world.term_a.verify(shown)
        assert hospital.check_in(sid, scanned["card_id"])["kind"] == "holder"
        page.click("#place-btn")
        page.wait_for_function("document.getElementById('place').textContent !== ''")
        assert (page.text_content("#place") or "").startswith("number 1, about 10 min")
        hospital.publish_report(scanned["card_id"], "lab", "尿常规 urinalysis", "normal")
        page.click("#reports-btn")
        page.wait_for_selector("#report-list li")
        assert "尿常规 urinalysis: normal" in (page.text_content("#report-list") or "")
        shot(browser, page, tmp_path / "kiosk.png")


def test_the_phone_shows_bills_pays_and_card_use(live, tmp_path: Path) -> None:
    """After a visit whose bill the hospital's payment terminal settled through the
    e-SSC (the gateway's answer still pending): the page lists the bill, the visit's
    settlement with its cash part and a button that hands it to the wallet, and where
    the card was used."""
    from playwright.sync_api import sync_playwright

    from services.sdk import HospitalClient, Step, settle_bill

    stack, world = live
    person = world.residents[3]
    hospital = HospitalClient(stack.url, stack.admin_token)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = logged_in(browser, stack, world, person, height=1300)
        page.click("#claim-btn")
        page.wait_for_selector("#bind-btn:not(.hidden)")
        page.click("#bind-btn")
        page.wait_for_function("document.getElementById('code-kind').textContent === 'fused'")
        scanned = world.term_a.verify(page.text_content("#code-text") or "",
                                      step=Step.PAYMENT)
        assert scanned["essc"] and scanned["essc"]["ec_token"]
        hospital.charge(scanned["card_id"], [
            {"code": "consultation", "category": "A", "amount_fen": 2_500},
            {"code": "drugs-b", "category": "B", "amount_fen": 40_000}])
        world.admin.payment_behaviour("unknown", resolve_after_ms=600_000)
        try:
            answer = settle_bill(hospital, world.term_a, scanned["card_id"],
                                 scanned["essc"]["ec_token"])
        finally:
            world.admin.payment_behaviour("success")
        assert answer["state"] == "awaiting_confirmation" and answer["cash_fen"] > 0
        page.click("#bills-btn")
        page.wait_for_selector("#bill-list li[data-state='open']")
        assert "¥425.00 (consultation, drugs-b): open" in (page.text_content("#bill-list") or "")
        page.click("#payments-btn")
        page.wait_for_selector("button.pay")
        assert "(awaiting_confirmation)" in (page.text_content("#payment-list") or "")
        page.click("button.pay")
        page.wait_for_selector("#handoff a")
        link = page.get_attribute("#handoff a", "href") or ""
        assert link.startswith("ehcpay://alipay/pay?order=" + answer["settlement_id"])
        assert f"amount_fen={answer['cash_fen']}" in link
        page.click("#usage-btn")
        page.wait_for_selector("#usage-list li")
        assert " payment at " in (page.text_content("#usage-list") or "")
        shot(browser, page, tmp_path / "paying.png")
