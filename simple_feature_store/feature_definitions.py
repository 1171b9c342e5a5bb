"""What `feast apply` reads in this folder: the Feast objects of the Hamilton DAG, by node name.

Feast's CLI collects the Feast objects it finds as module attributes, so they are exposed here;
`python apply.py` registers the same objects without going through this file.
"""

from hamilton_feast import script

globals().update(script.feast_objects(__file__))
