"""What `feast apply` scans in this folder: the Feast objects the Hamilton DAG returns.

`feast apply` registers the objects for the feature table `python apply.py` saved last; it does
not recompute features (an apply or plan should not rewrite data). Run `python apply.py` to
recompute, validate, save and register in one go.
"""

import dataflow

globals().update(dataflow.feast_objects_by_name(recompute_features=False))
