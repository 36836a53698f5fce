"""How the platform is deployed: the `single` or `cluster` profile of a home (profiles.py), and a local
cluster of Dagster's own distributed pieces for development and tests (local_cluster.py)."""
