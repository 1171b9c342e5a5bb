"""The Feast UI (`feast ui`) over this repo, as a user sees it: served on 127.0.0.1 and opened in
a real headless Chromium, which renders the pages from the UI server's registry API."""

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from this_repo import ON_DEMAND_VIEWS, PROJECT, applied_copy

from hamilton_feast.testing import free_port, png_summary, wait_until

# The UI addresses a project by the name in feature_store.yaml, whatever the folder is called.
NAME = PROJECT
FEATURE_VIEW = "driver_trip_stats"
ON_DEMAND_VIEW = "trip_request_features"
FEATURE_SERVICE = "trip_rating_model_v1"


@pytest.fixture(scope="module")
def feast_ui(tmp_path_factory):
    """`feast ui` on an applied copy of this repo, bound to 127.0.0.1; yields the project's address."""
    repo_dir = applied_copy(tmp_path_factory.mktemp("ui"))
    port = free_port()
    log = open(repo_dir / "data" / "feast_ui.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "feast"), "ui", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo_dir, stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"

    def lists_the_project() -> bool:
        with urllib.request.urlopen(base_url + "/projects-list.json", timeout=2) as response:
            return NAME.encode() in response.read()

    try:
        wait_until(lists_the_project, "feast ui", timeout_s=120, process=process)
        yield f"{base_url}/p/{NAME}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def assert_rendered(screenshot: Path, width: int):
    seen_width, seen_height, distinct_bytes = png_summary(screenshot)
    assert seen_width == width and seen_height > 0
    assert distinct_bytes > 64, f"{screenshot} looks blank: {distinct_bytes} distinct byte values"


def test_feast_ui_lists_the_feature_view_and_the_on_demand_view(feast_ui, chromium, tmp_path):
    text = chromium.open(f"{feast_ui}/feature-view", showing=[FEATURE_VIEW, ON_DEMAND_VIEW])
    assert "Feature Views (2)" in text
    assert {f"/p/{NAME}/feature-view/{FEATURE_VIEW}", f"/p/{NAME}/feature-view/{ON_DEMAND_VIEW}"} <= chromium.links()
    # The UI marks the on-demand view as such, next to its name.
    assert f"{ON_DEMAND_VIEW} \nondemand" in text
    assert_rendered(chromium.screenshot(tmp_path / "feature_views.png"), chromium.size[0])


def test_feast_ui_shows_the_feature_service_with_the_on_demand_features(feast_ui, chromium, tmp_path):
    chromium.open(f"{feast_ui}/feature-service", showing=[FEATURE_SERVICE])
    assert f"/p/{NAME}/feature-service/{FEATURE_SERVICE}" in chromium.links()

    text = chromium.open(f"{feast_ui}/feature-service/{FEATURE_SERVICE}", showing=ON_DEMAND_VIEWS[ON_DEMAND_VIEW])
    assert f"Feature Service: {FEATURE_SERVICE}" in text
    links = chromium.links()
    for field in ON_DEMAND_VIEWS[ON_DEMAND_VIEW]:
        assert f"/p/{NAME}/feature-view/{ON_DEMAND_VIEW}/feature/{field}" in links, field
    assert f"/p/{NAME}/feature-view/{FEATURE_VIEW}/feature/driver_trips_24h" in links
    assert_rendered(chromium.screenshot(tmp_path / "feature_service.png"), chromium.size[0])
