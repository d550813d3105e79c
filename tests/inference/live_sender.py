"""A live source for the tests: remuxes an encoded file (no re-encoding) as MPEG-TS to a listening
``tcp://127.0.0.1:PORT``, paced at ``--speed`` × real time from the packets' timestamps.

    python tests/inference/live_sender.py VIDEO PORT [--speed 4] [--pause_after 2 --pause 3] [--times 2 --gap 1]

``--pause_after S --pause P``: stall for P seconds once S stream seconds are sent (the connection
stays open). ``--times N --gap G``: send the file N times, each over a new connection, G seconds apart
(a sender that stops and comes back). Prints ``listening`` before each connection is accepted.
"""

import argparse
import time

import av


def send_once(path, port, speed, pause_after, pause):
    source = av.open(path)
    video = source.streams.video[0]
    print("listening", flush=True)
    output = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
    stream = output.add_stream_from_template(video)
    began, paused = time.monotonic(), False
    for packet in source.demux(video):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        due = float(packet.pts * video.time_base)
        if pause_after is not None and not paused and due >= pause_after:
            time.sleep(pause)
            began += pause
            paused = True
        time.sleep(max(0.0, due / speed - (time.monotonic() - began)))
        packet.stream = stream
        output.mux(packet)
    output.close()
    source.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("port", type=int)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--pause_after", type=float, default=None)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--gap", type=float, default=0.0)
    args = parser.parse_args()
    for turn in range(args.times):
        if turn:
            time.sleep(args.gap)
        send_once(args.video, args.port, args.speed, args.pause_after, args.pause)
    print("sent", flush=True)


if __name__ == "__main__":
    main()
