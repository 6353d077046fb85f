"""The prover's worker process: `python -m verify.prove JOBS_FD EVENTS_FD` (started by `worker.Worker`)."""

import sys
from multiprocessing.connection import Connection

from .worker import serve

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
