"""The README's screenshot of the playground: the packaged default model and value model served
on a loopback port, the page driven in headless Debian Chromium (as the browser test does), one
answer generated with most weight on `positive`, saved as docs/playground.png.

    python scripts/playground_screenshot.py [--out docs/playground.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from mavis.models.bundled import bundled_value_models
from mavis.serving.app import build_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerSpec

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,1250", "--hide-scrollbars"]
PROMPT = "My flight got cancelled and I'm stuck at the airport overnight. Any advice?"
WEIGHTS = {"relevant": 0.3, "harmless": 0.2, "positive": 0.5}


def set_slider(browser, name: str, value: float) -> None:
    slider = browser.find_element(By.CSS_SELECTOR, f"input[data-objective='{name}']")
    browser.execute_script("arguments[0].value = arguments[1];"
                           "arguments[0].dispatchEvent(new Event('input'));", slider, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/playground.png")
    args = parser.parse_args()
    folders = tuple(dict.fromkeys(str(p) for p in bundled_value_models().values()))
    app = build_app(ServerSpec(model="smollm2-135m-instruct", value_model_folders=folders))
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with BackgroundServer(app) as server, tempfile.TemporaryDirectory() as profile:
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"),
                                   options=options)
        try:
            browser.get(server.url + "/")
            wait = WebDriverWait(browser, 600)
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                         "ready"))
            browser.find_element(By.ID, "prompt").clear()
            browser.find_element(By.ID, "prompt").send_keys(PROMPT)
            for name, value in WEIGHTS.items():
                set_slider(browser, name, value)
            browser.find_element(By.ID, "generate").click()
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                         "done"))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(args.out)
        finally:
            browser.quit()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
