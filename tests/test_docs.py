"""The docs state each measured figure once, in BENCHMARKS.md, and elsewhere link to it (two
places disagreeing, such as one case at 2.0 s here and 6.8 s there, is what this prevents)."""

import re
import subprocess

from cross_repo import ROOT

# A duration, a size, a speed-up or a latency percentile.
FIGURE = re.compile(
    r"\b\d[\d,.]*\s?(?:ms|s|GB|MB)\b|\b\d+(?:\.\d+)?\s?x (?:faster|as long|the limit|of)\b|\bp(?:50|99)\b"
)
# Where figures belong: the benchmark table, the script that measures it, and the tests (which
# print what they measure without promising it).
MEASURING = ("BENCHMARKS.md", "benchmarks/", "tests/", "/tests/", "constraints.txt")


def test_performance_figures_are_written_only_in_benchmarks_md():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    checked, found = 0, []
    for name in tracked.stdout.splitlines():
        if name.startswith(MEASURING) or any(part in name for part in MEASURING[2:4]):
            continue
        if not name.endswith((".md", ".py", ".yaml", ".ipynb", ".sh", ".toml")):
            continue
        checked += 1
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if FIGURE.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert checked > 30
    assert found == [], "\n".join(found)


def test_the_readmes_link_to_the_figures():
    for readme in ["README.md", "integration_feature_store/README.md"]:
        assert "BENCHMARKS.md" in (ROOT / readme).read_text(), readme
