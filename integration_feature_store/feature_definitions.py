"""What `feast apply` reads in this folder: the Feast objects of the Hamilton DAG, by node name.

Feast's CLI collects the Feast objects it finds as module attributes, so they are exposed here,
for the feature table `python apply.py` saved last: an apply or a plan should not rewrite data.
Run `python apply.py` to compute, validate, save and register in one go.
"""

from hamilton_feast import script

globals().update(script.feast_objects(__file__))
