"""What `feast apply` scans in this folder: the Feast objects the Hamilton DAG returns.

Feast's CLI collects every Feast object it finds as a module attribute, so the objects are
exposed here under their node names. `python apply.py` registers the same objects without
going through this file.
"""

import dataflow

globals().update(dataflow.feast_objects_by_name())
