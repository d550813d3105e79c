r"""Run a tf.data service dispatcher or worker that decodes training videos for `keras-v4d train
--data_service`.

    keras-v4d data-service --dispatcher --port 5050
    keras-v4d data-service --worker --dispatcher_address HOST:5050 --port 5051 --host WORKER_HOST \
        --train train.txt

One dispatcher per training run; workers on any host that can read the videos (the list's paths,
relative to the list). Each worker serves the lists given with --train: it decodes, crops and
normalises the videos the trainer asks for. Prints its address, then serves until Ctrl-C (exit code
130) or SIGTERM (143). A worker that stops mid-epoch loses the videos it held; the trainer goes on
and counts them (`lost` in history.csv).

Security: the tf.data service listens on every network interface without authentication; any host
that reaches the dispatcher can register a dataset graph that the workers run, TensorFlow's file
operations included. Run it on a private network only, its ports open to the training hosts alone
(docs/security.md).
"""

import socket
import sys
import time

from absl import flags

from keras_v4d.cli.common import CommandError, run, until_stopped

FLAGS = flags.FlagValues()
flags.DEFINE_bool("dispatcher", False, "Run the dispatcher.", flag_values=FLAGS)
flags.DEFINE_bool("worker", False, "Run a worker.", flag_values=FLAGS)
flags.DEFINE_integer("port", 0, "Port to serve on (0: a free port, printed).", lower_bound=0, upper_bound=65535,
                     flag_values=FLAGS)
flags.DEFINE_string("dispatcher_address", None, "Worker: the dispatcher, HOST:PORT or grpc://HOST:PORT.",
                    flag_values=FLAGS)
flags.DEFINE_multi_string("train", None, "Worker: a video list (or class folders) to serve, as given to "
                          "`keras-v4d train --train`; repeat for several.", flag_values=FLAGS)
flags.DEFINE_string("host", None, "Worker: the name or address the trainer reaches this host by (default: this "
                    "host's name).", flag_values=FLAGS)
flags.DEFINE_float("worker_timeout", 10.0, "Dispatcher: seconds without a heartbeat after which a worker is "
                   "dropped (the videos it held are lost to their epoch).", lower_bound=0.1, flag_values=FLAGS)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _serve():
    import tensorflow as tf

    from keras_v4d.data.service import EXPOSURE_WARNING, service_address, start_dispatcher, start_worker

    print(f"warning: {EXPOSURE_WARNING}", file=sys.stderr, flush=True)

    if FLAGS.dispatcher:
        try:
            server = start_dispatcher(FLAGS.port, FLAGS.worker_timeout)
        except tf.errors.OpError as error:
            raise CommandError(f"--port {FLAGS.port}: cannot serve there ({error.message})") from None
        print(f"dispatcher: {server.target.replace('localhost', socket.getfqdn(), 1)} (train with --data_service "
              "at this address; Ctrl-C or SIGTERM stops it)", flush=True)
    else:
        if not FLAGS.dispatcher_address or not FLAGS.train:
            raise CommandError("--worker needs --dispatcher_address HOST:PORT and --train LIST")
        try:
            service_address(FLAGS.dispatcher_address, "--dispatcher_address")
            host, port = FLAGS.host or socket.getfqdn(), FLAGS.port or _free_port()
            server, tokens = start_worker(FLAGS.dispatcher_address, FLAGS.train, port, host)
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        except tf.errors.OpError as error:
            raise CommandError(f"--port {port}: cannot serve there ({error.message})") from None
        print(f"worker: {host}:{port} serving {', '.join(FLAGS.train)} to {FLAGS.dispatcher_address} "
              f"({', '.join(tokens)}; Ctrl-C or SIGTERM stops it)", flush=True)
    while True:  # the servers run in TensorFlow's threads; the main thread waits for a signal
        time.sleep(1)


def main(argv):
    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if FLAGS.dispatcher == FLAGS.worker:
        raise CommandError("give exactly one of --dispatcher or --worker")
    until_stopped(_serve, f"the {'dispatcher' if FLAGS.dispatcher else 'worker'} stopped")


if __name__ == "__main__":
    run("data-service", main, FLAGS, __doc__)
