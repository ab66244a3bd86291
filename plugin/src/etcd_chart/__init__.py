"""Tools around the etcd Helm chart: post-renderer, validator, PKI and sandbox."""

__version__ = "0.1.0"
