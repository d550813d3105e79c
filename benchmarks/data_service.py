"""Videos/s one tf.data service worker delivers, against the local video-file pipeline.

The Mini-Kinetics setting of ``input_pipeline.py`` (320×256 H.264 videos of 300 frames, U=4, T=4,
stride 8, 224² training crops): a dispatcher in this process, one worker as a separate process
(``keras-v4d data-service --worker``, the command a decoding host runs), and rounds that interleave
one epoch read locally (``video_dataset``) with one epoch read from the worker
(``service_video_dataset``); medians of videos/s over the rounds. Both use every core of this
machine, one after the other, so the figures say what one worker of this machine delivers, not what
a cluster adds. Run: ``python benchmarks/data_service.py [--videos N] [--rounds N]``.
"""

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_machine
from input_pipeline import SETTING, make_videos

from keras_v4d.data import service_video_dataset, start_dispatcher, video_dataset


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_worker_process(dispatcher_port, listing):
    """``keras-v4d data-service --worker`` serving ``listing``; returns once it says it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_v4d.cli.data_service", "--worker", f"--dispatcher_address=127.0.0.1:"
         f"{dispatcher_port}", f"--port={_free_port()}", "--host=127.0.0.1", f"--train={listing}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 1)[0]:
            line = process.stdout.readline()
            if line.startswith("worker:"):
                return process
            if not line and process.poll() is not None:
                break
    process.kill()
    raise RuntimeError("the worker did not start")


def epoch_rate(dataset, batch_size):
    """Videos/s of one pass over ``dataset``."""
    start = time.perf_counter()
    batches = sum(1 for _ in dataset)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as folder:
        listing = make_videos(folder, args.videos)
        dispatcher = start_dispatcher(0)
        port = int(dispatcher.target.rsplit(":", 1)[1])
        worker = start_worker_process(port, listing)
        try:
            local = video_dataset(listing, SETTING, training=True, batch_size=args.batch_size)
            remote = service_video_dataset(dispatcher.target, listing, SETTING, batch_size=args.batch_size)[0]
            rates = {"local pipeline": [], "one service worker": []}
            epoch_rate(local, args.batch_size)  # warm-up: tracing, thread pools, the worker's first job
            epoch_rate(remote, args.batch_size)
            for _ in range(args.rounds):
                rates["local pipeline"].append(epoch_rate(local, args.batch_size))
                rates["one service worker"].append(epoch_rate(remote, args.batch_size))
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    print(f"setting: U=4 T=4 stride 8, 320×256 H.264 videos of 300 frames, 224² crops, batch {args.batch_size}, "
          f"{args.videos} videos an epoch, {args.rounds} interleaved rounds, medians")
    for name, values in rates.items():
        print(f"{name:<20} {statistics.median(values):7.2f} videos/s  (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
