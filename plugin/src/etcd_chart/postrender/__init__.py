"""The post-renderer: `etcd-chart post-render` reads a rendered manifest stream, fills in each etcd
member set's peer list and initial-cluster-state, checks the stream, and writes it back.

Modules: `stream` (reading and writing the stream), `members` (finding member sets and where
their settings live), `peers` (peer lists), `state` (initial-cluster-state), `checks` (checks
across objects), `preflight` (changes a live cluster cannot take), `cluster` (the Kubernetes API,
imported only when a cluster is contacted), `core` (the whole run), `command` (the command line).
"""
