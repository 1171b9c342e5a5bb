"""Train, evaluate and register the rider-rating model (rating_model.py) on the registered features.

    python train.py      # training questions -> training set at each request -> fit -> evaluate -> MLflow

The same Hamilton DAG as apply.py, asked for the model's nodes: the features are not recomputed
(the table apply.py saved last stands in for its saver) but read back through the registered
feature service, as of each trip's request. MLflow records the run in data/mlflow.db, or in the
tracking server MLFLOW_TRACKING_URI names.
"""

import argparse

from hamilton_feast import Repo, script


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    repo = Repo(__file__)
    done = repo.on_saved_tables(["model_evaluation", "feature_importances", "registered_model"])
    print(done["model_evaluation"].round(3).to_string(), "\n")
    print("Largest permutation importances (growth of the mean absolute error):")
    print(done["feature_importances"].head(5).round(4).to_string(), "\n")
    model = done["registered_model"]
    print(f"Registered {model['name']} version {model['version']} (run {model['run_id']}), "
          f"trained on feature service {model['feature_service']}")


if __name__ == "__main__":
    script.run(main, outcome="no model was registered")
