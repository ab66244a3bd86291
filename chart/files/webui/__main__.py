"""Run as `python3 /opt/etcd-webui`: the directory is the program (server.py)."""

import sys

from server import main

sys.exit(main())
