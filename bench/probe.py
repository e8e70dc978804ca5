#!/usr/bin/python3
"""The hardening probe: this round's attacks on a running `malaria serve`, then a mixed soak.

Usage: bench/probe.py MALARIA_BIN SHARED_DATA [--soak-seconds 60] [--out FILE.json]

Starts the server on a free loopback port (its default limits), and while each attack runs a
watcher asks /health every 0.2 s and samples the server's resident memory. Prints one line per
attack (statuses seen, slowest /health, peak resident memory) and, for the soak, the resident
memory after warm-up against the end. Loopback only; every loop is bounded in count and time.
Needs Debian's python3-opencv and python3-numpy.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def resident_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def raw(port, data, timeout=300):
    """Sends bytes, returns (status, seconds); status 0 when the connection closed unanswered."""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        s.close()
    line = out.split(b"\r\n", 1)[0].split()
    return (int(line[1]) if len(line) > 1 and line[1].isdigit() else 0), time.time() - t0


def post(path, body, content_type="image/png"):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def multipart(files):
    b = b"probe-boundary"
    body = b""
    for name, data in files:
        body += (b"--" + b + b'\r\nContent-Disposition: form-data; name="file"; filename="' +
                 name.encode() + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n")
    return body + b"--" + b + b"--\r\n", "multipart/form-data; boundary=" + b.decode()


class Watcher:
    """/health latency and resident memory while an attack runs."""

    def __init__(self, port, pid):
        self.port, self.pid = port, pid

    def __enter__(self):
        self.stop = threading.Event()
        self.worst_health, self.peak_mb, self.samples = 0.0, 0.0, []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        return self

    def run(self):
        while not self.stop.is_set():
            status, seconds = raw(self.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 30)
            if status != 200:
                seconds = max(seconds, 99.0)
            self.worst_health = max(self.worst_health, seconds)
            mb = resident_mb(self.pid)
            self.peak_mb = max(self.peak_mb, mb)
            self.samples.append((time.time(), mb))
            self.stop.wait(0.2)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def encode(image, ext=".png"):
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def run_clients(count, seconds, make_request, port):
    """count threads send make_request(i) until `seconds` pass; returns statuses and latencies."""
    results, lock = [], threading.Lock()
    deadline = time.time() + seconds

    def client(i):
        while time.time() < deadline:
            status, t = raw(port, make_request(i))
            with lock:
                results.append((i, status, t))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def statuses(results):
    out = {}
    for _, status, _ in results:
        out[status] = out.get(status, 0) + 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("malaria")
    ap.add_argument("shared_data")
    ap.add_argument("--soak-seconds", type=float, default=60)
    ap.add_argument("--out")
    args = ap.parse_args()
    field = cv2.imread(f"{args.shared_data}/fields/iml/images/PA171690.JPG")
    cells = sorted(os.listdir(f"{args.shared_data}/cell_images_128/Parasitized"))[:32]
    cell_bytes = [open(f"{args.shared_data}/cell_images_128/Parasitized/{c}", "rb").read() for c in cells]

    discs = np.full((4096, 4096, 3), 230, np.uint8)
    for y in range(16, 4096, 31):
        for x in range(16, 4096, 31):
            cv2.circle(discs, (x, y), 14, (150, 120, 200), -1)
    tiled = np.zeros((4096, 4096, 3), np.uint8)
    for y in range(0, 4096, field.shape[0]):
        for x in range(0, 4096, field.shape[1]):
            h, w = min(field.shape[0], 4096 - y), min(field.shape[1], 4096 - x)
            tiled[y:y + h, x:x + w] = field[:h, :w]
    rng = np.random.default_rng(1)
    images = {
        "discs": encode(discs), "tiled": encode(tiled, ".jpg"),
        "noise": encode(rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8)),
        "zero": encode(np.zeros((4096, 4096, 3), np.uint8)),
        "field": encode(field, ".jpg"),
    }

    port = free_port()
    server = subprocess.Popen([args.malaria, "--threads", "2", "serve", "--model",
                               os.path.join(os.path.dirname(args.malaria), "..", "models", "malaria-cellnet-64.pt"),
                               "--port", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    report = {"attacks": {}}

    def attack(name, fn):
        with Watcher(port, server.pid) as w:
            t0 = time.time()
            detail = fn()
            seconds = time.time() - t0
        row = {"seconds": round(seconds, 1), "worst_health_s": round(w.worst_health, 3),
               "peak_resident_mb": round(w.peak_mb), "after_resident_mb": round(resident_mb(server.pid))}
        row.update(detail)
        report["attacks"][name] = row
        print(f"{name:44s} {json.dumps(row)}", flush=True)

    one_cell = post("/api/v1/predict", cell_bytes[0])
    attack("1. three screenings of 17,000 discs", lambda: {"statuses": statuses(
        run_clients(3, 0.1, lambda i: post("/api/v1/screen", images["discs"]), port))})

    def starvation(clients):
        stop = time.time() + 20
        lat = []

        def background():
            return run_clients(clients, 20, lambda i: post("/api/v1/screen", images["tiled"], "image/jpeg"), port)

        t = threading.Thread(target=lambda: lat.append(background()))
        t.start()
        time.sleep(2)
        predict = []
        while time.time() < stop:
            predict.append(raw(port, one_cell))
            time.sleep(0.5)
        t.join()
        return {"screen_statuses": statuses(lat[0]),
                "predict_statuses": statuses([(0, s, t) for s, t in predict]),
                "predict_worst_s": round(max(t for _, t in predict), 3)}
    attack("2. 4 clients screening 4096px fields", lambda: starvation(4))
    attack("2. 8 clients screening 4096px fields", lambda: starvation(8))

    def explain_flood():
        body, ctype = multipart([(f"c{k}.png", cell_bytes[k]) for k in range(32)])
        stop = time.time() + 15
        flood, plain = [], []
        t = threading.Thread(target=lambda: flood.extend(run_clients(
            100, 15, lambda i: post("/api/v1/predict?explain=1", body, ctype), port)))
        t.start()
        time.sleep(1)
        while time.time() < stop:
            plain.append(raw(port, one_cell))
            time.sleep(0.3)
        t.join()
        return {"explain_statuses": statuses(flood),
                "predict_statuses": statuses([(0, s, t) for s, t in plain]),
                "predict_worst_s": round(max(t for _, t in plain), 3)}
    attack("3. 100 clients explaining 32 cells", explain_flood)
    zero_body, zero_type = multipart([(f"z{k}.png", images["zero"]) for k in range(64)])
    attack("3. 64 zero 4096px cells with explain=1", lambda: dict(zip(
        ["status", "seconds_alone"], raw(port, post("/api/v1/predict?explain=1", zero_body, zero_type)))))
    attack("5. noise field", lambda: {"status": raw(port, post("/api/v1/screen", images["noise"]))[0]})
    q = "&".join(f"a={i % 10}" for i in range(2000))
    attack("9-13. URL, query, Host and Expect attacks", lambda: {"statuses": [
        raw(port, b"GET /metrics%00.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0],
        raw(port, f"GET /health?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())[0],
        raw(port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")[0],
        raw(port, b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                  b"Expect: 100-continue\r\n\r\n", 60)[0]]})

    # The soak: predict, explain and screen mixed over 16 connections.
    explain_body, explain_type = multipart([(f"c{k}.png", cell_bytes[k]) for k in range(4)])
    mix = [post("/api/v1/predict", cell_bytes[1]), post("/api/v1/predict?explain=1", explain_body, explain_type),
           post("/api/v1/screen", images["field"], "image/jpeg")]
    with Watcher(port, server.pid) as w:
        results = run_clients(16, args.soak_seconds, lambda i: mix[i % 3], port)
    warm = [mb for t, mb in w.samples if t - w.samples[0][0] >= args.soak_seconds / 4]
    report["soak"] = {"seconds": args.soak_seconds, "requests": len(results),
                      "requests_per_second": round(len(results) / args.soak_seconds, 1),
                      "statuses": statuses(results), "worst_health_s": round(w.worst_health, 3),
                      "resident_mb_after_warm_up": round(warm[0]) if warm else None,
                      "resident_mb_peak_after_warm_up": round(max(warm)) if warm else None,
                      "resident_mb_end": round(resident_mb(server.pid))}
    print(f"{'soak':44s} {json.dumps(report['soak'])}", flush=True)
    server.terminate()
    server.wait(timeout=120)
    if args.out:
        json.dump(report, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
