"""The playground page driven in headless Chromium (Debian's `chromium` and `chromium-driver`,
which scripts/install.sh installs) with Selenium: load the page, move a slider, generate, wait
for the streamed answer, read each objective's reward and the KL."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from serving_support import OBJECTIVES, build_serving_models

from mavis.decoding.decoder import MavisDecoder
from mavis.serving.app import create_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerSpec

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,1300"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not os.path.exists(CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (scripts/install.sh installs them)")


def headless_chromium(profile: str):
    """A Chromium driven by Debian's chromedriver, with a fresh profile; Selenium is never
    allowed to download a browser or driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(service=service, options=options)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reference, value_model = build_serving_models(tmp_path_factory.mktemp("browser-models"))
    decoder = MavisDecoder.load(str(reference), [str(value_model)])
    spec = ServerSpec(model=str(reference), value_model_folders=(str(value_model),),
                      served_name="tiny")
    with BackgroundServer(create_app(decoder, spec)) as running:
        yield running


@pytest.fixture()
def browser():
    with tempfile.TemporaryDirectory(prefix="mavis-chromium-") as profile:
        driver = headless_chromium(profile)
        try:
            yield driver
        finally:
            driver.quit()


def generate(browser) -> tuple[str, dict[str, float], float]:
    """Press generate; wait for the stream to end; (answer, rewards, KL) as the page shows."""
    wait = WebDriverWait(browser, 60)
    browser.find_element(By.ID, "generate").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "done"))
    answer = browser.find_element(By.ID, "answer").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")
    rewards = {row.get_attribute("data-objective"):
               float(row.find_element(By.CLASS_NAME, "reward").text) for row in rows}
    return answer, rewards, float(browser.find_element(By.ID, "kl").text)


def test_playground_moves_a_slider_generates_and_shows_scores(server, browser):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "ready"))
    assert browser.find_element(By.ID, "model").text == "tiny"
    sliders = {s.get_attribute("data-objective"): s for s in
               browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")}
    assert list(sliders) == OBJECTIVES
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("hello there")

    first, rewards, kl = generate(browser)
    assert first and set(rewards) == set(OBJECTIVES) and kl == kl  # a number, not NaN

    # all the weight on "positive": the slider of "harmless" goes to 0
    sliders["harmless"].send_keys(Keys.HOME)
    sliders["positive"].send_keys(Keys.END)
    assert sliders["harmless"].get_attribute("value") == "0"
    shown = browser.find_element(By.CSS_SELECTOR, "#sliders .slider output").text
    assert shown == "0.00"
    second, rewards, _ = generate(browser)
    assert second and second != first  # the same seed, another trade-off: another answer
    weights = {row.get_attribute("data-objective"): row.find_elements(By.TAG_NAME, "td")[1].text
               for row in browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")}
    assert weights == {"harmless": "0", "positive": "1.00"}


def test_playground_shows_the_servers_error(server, browser):
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "ready"))
    max_tokens = browser.find_element(By.ID, "max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("1000000")  # more than the server allows per answer
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 30).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "max_tokens"))
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
