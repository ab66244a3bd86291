"""Run as `python3 /opt/etcd-agent COMMAND`: the directory is the program (commands.py)."""

import sys

from commands import main

sys.exit(main())
