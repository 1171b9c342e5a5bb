"""What the cross-repo specifications share: where the repos are and how each registers."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT, SIMPLE, INTEGRATION = "default_feature_store", "simple_feature_store", "integration_feature_store"
# How each repo registers its objects, run inside the repo folder (its README says the same).
APPLY = {
    DEFAULT: ["feast", "apply"],
    SIMPLE: [sys.executable, "apply.py"],
    INTEGRATION: [sys.executable, "apply.py"],
}
PLAN = {
    DEFAULT: ["feast", "plan"],
    SIMPLE: [sys.executable, "apply.py", "--plan"],
    INTEGRATION: [sys.executable, "apply.py", "--plan"],
}
