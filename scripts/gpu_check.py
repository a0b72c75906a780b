#!/usr/bin/env python3
"""The checks of scripts/gpu-check.sh, run by it once the executor is built and
PostgreSQL is up: a real `inferq run` serving models exported from Python on
the GPU, one line per check, then a 'N passed, N failed, N skipped' line.
Only the standard library and torch (for the raw forward pass) are used;
SQL goes through the bundled psql.

    gpu_check.py --inferq BIN --executor BIN --psql BIN --dsn URL --work DIR
                 --repo DIR [--device cuda:0|cpu]

With --device cpu (a rehearsal on a machine without a GPU) the "gpu" queues
run on the CPU and the checks that need a GPU say SKIP.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

RESULTS = []  # (status, line)


def report(status, what):
    RESULTS.append(status)
    print(f"gpu-check: {status} {what}", flush=True)


class Env:
    def __init__(self, args):
        self.args = args
        self.gpu = args.device.startswith("cuda")
        self.models = os.path.join(args.work, "models")
        self.metrics = "127.0.0.1:19847"

    def sql(self, query, timeout=120):
        """Rows of a query as lists of strings (psql unaligned, tab-separated)."""
        path = os.path.join(self.args.work, "query.sql")
        with open(path, "w") as f:
            f.write(query)
        out = subprocess.run([self.args.psql, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-d", self.args.dsn, "-f", path], capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def enqueue(self, queue, payloads, max_attempts=None):
        """Enqueues in one transaction (one commit, so a unit can hold them all); returns the ids."""
        literal = ",".join("$p$" + json.dumps(p) + "$p$" for p in payloads)
        attempts = "NULL" if max_attempts is None else str(int(max_attempts))
        rows = self.sql(f"SELECT inferq.enqueue('{queue}', p::jsonb, max_attempts => {attempts}) "
                        f"FROM unnest(ARRAY[{literal}]) WITH ORDINALITY AS t(p, n) ORDER BY n")
        return [int(r[0]) for r in rows]

    def wait_final(self, ids, timeout):
        where = "id IN (" + ",".join(map(str, ids)) + ")"
        deadline = time.time() + timeout
        while time.time() < deadline:
            left = int(self.sql(f"SELECT count(*) FROM inferq.jobs WHERE {where} "
                                "AND state NOT IN ('succeeded', 'dead', 'cancelled')")[0][0])
            if left == 0:
                return True
            time.sleep(0.2)
        return False

    def jobs(self, ids):
        where = "id IN (" + ",".join(map(str, ids)) + ")"
        rows = self.sql("SELECT id, state, attempts, coalesce(result::text, 'null'), coalesce(last_error, ''), "
                        f"errors::text FROM inferq.jobs WHERE {where} ORDER BY id")
        byid = {int(r[0]): {"state": r[1], "attempts": int(r[2]), "result": json.loads(r[3]),
                            "last_error": r[4], "errors": json.loads(r[5])} for r in rows}
        return [byid[i] for i in ids]

    def scrape(self):
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, text, name, labels):
        """The value of one series (labels a dict, matched exactly), 0 when absent."""
        for line in text.splitlines():
            m = re.match(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", line)
            if not m:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if got == labels:
                return float(m.group(2))
        return 0.0


def queue_entry(env, name, model, device, max_jobs=8, instances=1, extra=""):
    with open(os.path.join(env.models, model + ".queue.yaml")) as f:
        io = "".join("    " + line for line in f)
    threads = 2 if device == "cpu" else 1
    return (f"  - name: {name}\n    model: {os.path.join(env.models, model + '.pt')}\n"
            f"    device: {device}\n    instances: {instances}\n    threads: {threads}\n"
            f"    batch: {{max_jobs: {max_jobs}}}\n    deadline: 60s\n"
            f"    retry: {{max_attempts: 3, backoff: 200ms, max_backoff: 1s}}\n{io}{extra}")


def write_config(env, batches):
    dev = env.args.device
    queues = []
    for model, max_jobs in (("text", 8), ("pair", 8), ("heads", 8), ("resnet18", 4)):
        queues.append(queue_entry(env, model + "_cpu", model, "cpu", max_jobs))
        queues.append(queue_entry(env, model + "_gpu", model, dev, max_jobs))
    queues.append(queue_entry(env, "embed_a", "embed", dev, 4))
    queues.append(queue_entry(env, "embed_b", "embed", dev, 4))
    queues.append(queue_entry(env, "oom", "oom", dev, 16))
    queues.append(queue_entry(env, "idle", "text", dev, 8, extra="    idle_exit_after: 20s\n"))
    for b in batches:
        queues.append(queue_entry(env, f"tput{b}", "text", dev, b))
        # The same with what a small-batch GPU queue should run with: two
        # executors sharing the GPU, each claiming its next unit ahead.
        queues.append(queue_entry(env, f"tput{b}pf", "text", dev, b, instances=2, extra="    prefetch: true\n"))
    path = os.path.join(env.args.work, "inferq.yaml")
    with open(path, "w") as f:
        f.write(f"database: {{url: '{env.args.dsn}'}}\n"
                "worker: {poll_interval: 200ms, heartbeat_interval: 500ms, stale_after: 10s, "
                f"shutdown_grace: 5s, executor_path: {env.args.executor}}}\n"
                f"metrics: {{listen: '{env.metrics}'}}\n"
                "logging: {level: debug}\n"
                "queues:\n" + "".join(queues))
    return path


def start_daemon(env, config):
    log = open(os.path.join(env.args.work, "daemon.log"), "w")
    proc = subprocess.Popen([env.args.inferq, "run", "--config", config], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"inferq run exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{env.metrics}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"inferq run not ready after 240 s; see {log.name}")


def daemon_log(env):
    with open(os.path.join(env.args.work, "daemon.log")) as f:
        return f.read()


def executor_pids(env, queue):
    return [int(p) for p in re.findall(re.escape(queue) + r"#\d+ \(pid (\d+)\) ready", daemon_log(env))]


def outputs_of(result):
    return {o["name"]: o for o in result["outputs"]}


def max_rel_error(a, b):
    """Largest |a - b| over outputs, relative to b's largest magnitude (at least 1)."""
    worst = 0.0
    for name, ob in b.items():
        oa = a[name]
        if oa["shape"] != ob["shape"]:
            return float("inf")
        scale = max([1.0] + [abs(v) for v in ob["data"]])
        worst = max([worst] + [abs(x - y) / scale for x, y in zip(oa["data"], ob["data"])])
    return worst


def check_cuda_equals_cpu(env):
    """Every Python case through X_cpu and X_gpu: GPU results equal CPU results and Python's."""
    tolerance = {"text": 1e-3, "pair": 1e-4, "heads": 1e-4, "resnet18": 1e-2}
    figures = []
    ok = True
    for model in ("text", "pair", "heads", "resnet18"):
        with open(os.path.join(env.models, model + ".cases.json")) as f:
            cases = json.load(f)
        payloads = [c["payload"] for c in cases]
        cpu_ids = env.enqueue(model + "_cpu", payloads)
        gpu_ids = env.enqueue(model + "_gpu", payloads)
        if not env.wait_final(cpu_ids + gpu_ids, 120):
            report("FAIL", f"cuda results equal cpu: {model} jobs not finished in 120 s")
            return
        worst_cpu = worst_py = 0.0
        for c, jc, jg in zip(cases, env.jobs(cpu_ids), env.jobs(gpu_ids)):
            if jc["state"] != "succeeded" or jg["state"] != "succeeded":
                report("FAIL", f"cuda results equal cpu: {model}: {jc['last_error'] or jg['last_error']}")
                return
            g = outputs_of(jg["result"])
            worst_cpu = max(worst_cpu, max_rel_error(g, outputs_of(jc["result"])))
            expected = {n: {"shape": e["shape"], "data": e["data"]} for n, e in c["expected"].items()}
            worst_py = max(worst_py, max_rel_error(g, expected))
        ok = ok and worst_cpu <= tolerance[model] and worst_py <= tolerance[model]
        figures.append(f"{model} {worst_cpu:.1e} vs cpu queue, {worst_py:.1e} vs Python (tol {tolerance[model]:g})")
    report("PASS" if ok else "FAIL",
           f"{env.args.device} results equal cpu (max error relative to the largest output): " + "; ".join(figures))


def check_device_side_assert(env):
    """An out-of-range embedding id on CUDA: only embed_a's executor is replaced; embed_b keeps serving."""
    if not env.gpu:
        report("SKIP", "device-side assert: needs a GPU")
        return
    good = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]}]}
    bad = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [2], "data": [5, 1000]}]}
    b_pids_before = executor_pids(env, "embed_b")
    bad_id = env.enqueue("embed_a", [bad], max_attempts=2)[0]
    neighbour = []
    for _ in range(20):  # the neighbour serves while embed_a's executors die
        neighbour += env.enqueue("embed_b", [good])
        time.sleep(0.05)
    done = env.wait_final([bad_id] + neighbour, 120)
    after = env.enqueue("embed_a", [good])
    done = done and env.wait_final(after, 120)
    metrics = env.scrape()
    restarts_a = env.metric(metrics, "inferq_executor_restarts_total", {"queue": "embed_a", "reason": "fatal_gpu"})
    restarts_b = sum(env.metric(metrics, "inferq_executor_restarts_total", {"queue": "embed_b", "reason": r})
                     for r in ("deadline", "crash", "fatal_gpu", "idle"))
    badrow = env.jobs([bad_id])[0]
    classes = [e.get("class") for e in badrow["errors"]]
    served = sum(j["state"] == "succeeded" for j in env.jobs(neighbour))
    after_ok = env.jobs(after)[0]["state"] == "succeeded"
    ok = (done and badrow["state"] == "dead" and classes == ["fatal", "fatal"]
          and "device-side assert" in badrow["last_error"] and restarts_a >= 2 and restarts_b == 0
          and served == len(neighbour) and after_ok and executor_pids(env, "embed_b") == b_pids_before)
    report("PASS" if ok else "FAIL",
           f"device-side assert: bad job {badrow['state']} after {badrow['attempts']} attempts (classes {classes}), "
           f"embed_a executors replaced {restarts_a:.0f}x (fatal_gpu), a later embed_a job "
           f"{'succeeded' if after_ok else 'FAILED'}; neighbour embed_b on the same GPU served {served}/"
           f"{len(neighbour)}, restarts {restarts_b:.0f}, same pid {executor_pids(env, 'embed_b') == b_pids_before}; "
           f"error: {badrow['last_error'][:160]}")


def check_oom(env):
    """16 jobs in one unit, one of which asks for 100,000 GiB: only it fails."""
    if not env.gpu:
        report("SKIP", "real CUDA out-of-memory: needs a GPU")
        return
    payloads = []
    for i in range(16):
        gib = 100000 if i == 6 else 0
        payloads.append({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [i, 1, 2, 3]},
                                    {"name": "gib", "datatype": "INT64", "shape": [1], "data": [gib]}]})
    ids = env.enqueue("oom", payloads, max_attempts=1)
    done = env.wait_final(ids, 120)
    rows = env.jobs(ids)
    culprit = rows[6]
    others = rows[:6] + rows[7:]
    ok_others = sum(r["state"] == "succeeded" and r["attempts"] == 1 for r in others)
    restarts = sum(env.metric(env.scrape(), "inferq_executor_restarts_total", {"queue": "oom", "reason": r})
                   for r in ("deadline", "crash", "fatal_gpu"))
    ok = (done and culprit["state"] == "dead" and "out of memory" in culprit["last_error"].lower()
          and ok_others == 15 and restarts == 0)
    report("PASS" if ok else "FAIL",
           f"real CUDA out-of-memory: {ok_others}/15 neighbours in its unit succeeded at their first attempt, "
           f"the culprit is {culprit['state']}, executor restarts {restarts:.0f}; "
           f"error: {culprit['last_error'][:160]}")


def check_nvml(env):
    if not env.gpu:
        report("SKIP", "NVML series in /metrics: needs a GPU")
        return
    deadline = time.time() + 20
    lines = []
    while time.time() < deadline and not lines:
        lines = [l for l in env.scrape().splitlines() if l.startswith("inferq_gpu_")]
        time.sleep(1)
    names = sorted({l.split("{")[0] for l in lines})
    ok = {"inferq_gpu_memory_used_bytes", "inferq_gpu_memory_total_bytes", "inferq_gpu_utilization_ratio"} <= set(names)
    report("PASS" if ok else "FAIL", f"NVML series in /metrics: {', '.join(names) or 'none'}"
           + (f" (e.g. {lines[0]})" if lines else ""))


def gpu_apps():
    """{pid: MiB} of the processes nvidia-smi sees on the GPUs."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    apps = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            apps[int(parts[0])] = float(parts[1]) if parts[1].replace(".", "").isdigit() else 0.0
    return apps


def gpu_used_mib():
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    return sum(float(x) for x in out.split())


def idle_before(env):
    """Before the other checks: the idle queue's executor and what it holds."""
    if not env.gpu or not shutil.which("nvidia-smi"):
        return None
    pids = executor_pids(env, "idle")
    apps = gpu_apps()
    return {"pid": pids[-1] if pids else None, "mib": apps.get(pids[-1], 0.0) if pids else 0.0,
            "seen": bool(pids) and pids[-1] in apps, "used": gpu_used_mib()}


def check_idle_exit(env, before):
    if before is None:
        report("SKIP", "idle exit frees GPU memory: needs a GPU and nvidia-smi")
        return
    deadline = time.time() + 90
    while time.time() < deadline and "idle#0 (pid %s) exited after being idle" % before["pid"] not in daemon_log(env):
        time.sleep(0.5)
    exited = "idle#0 (pid %s) exited after being idle" % before["pid"] in daemon_log(env)
    time.sleep(2)
    apps = gpu_apps()
    used = gpu_used_mib()
    job = env.enqueue("idle", [{"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [3],
                                            "data": [4, 5, 6]}]}])
    served = env.wait_final(job, 120) and env.jobs(job)[0]["state"] == "succeeded"
    ok = exited and before["seen"] and before["pid"] not in apps and served
    report("PASS" if ok else "FAIL",
           f"idle exit frees GPU memory: executor pid {before['pid']} held {before['mib']:.0f} MiB "
           f"(nvidia-smi saw it: {before['seen']}); after its idle exit it is "
           f"{'gone from' if before['pid'] not in apps else 'STILL in'} nvidia-smi's processes; GPU memory used "
           f"{before['used']:.0f} -> {used:.0f} MiB; a new job then {'succeeded' if served else 'FAILED'}")


def raw_throughput(env, batch, seq, seconds):
    import torch

    device = torch.device(env.args.device)
    m = torch.jit.load(os.path.join(env.models, "text.pt"), map_location=device).eval()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2)) if device.type == "cpu" else None
    ids = torch.randint(1, 1000, (batch, seq), dtype=torch.int64, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            m(ids)
        sync()
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            m(ids)
            n += 1
        sync()
        return batch * n / (time.perf_counter() - t0)


def check_throughput(env, batches, jobs, seq, suffix="", what="one executor, prefetch off"):
    """e2e (enqueue to done through SQL) vs the raw forward of the same model at batch 1, 32 and 256."""
    lines = []
    for b in batches:
        n = jobs[b]
        q = f"tput{b}{suffix}"
        payload = ("jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object('name', 'input_ids', "
                   f"'datatype', 'INT64', 'shape', jsonb_build_array({seq}), 'data', "
                   f"(SELECT jsonb_agg(1 + (g * 131 + i * 71) % 999) FROM generate_series(0, {seq - 1}) i))))")
        env.sql(f"SELECT count(inferq.enqueue('{q}', {payload})) FROM generate_series(1, {n}) g")
        deadline = time.time() + 240
        while time.time() < deadline:
            left = int(env.sql(f"SELECT count(*) FROM inferq.jobs WHERE queue = '{q}' "
                               "AND state NOT IN ('succeeded', 'dead')")[0][0])
            if left == 0:
                break
            time.sleep(0.2)
        row = env.sql("SELECT count(*) FILTER (WHERE state = 'succeeded'), "
                      "extract(epoch FROM max(finished_at) - min(started_at)) "
                      f"FROM inferq.jobs WHERE queue = '{q}'")[0]
        done, span = int(row[0]), float(row[1] or 0)
        e2e = done / span if span > 0 else 0.0
        raw = raw_throughput(env, b, seq, 2.0)
        lines.append((b, done, n, e2e, raw))
    ok = all(done == n for _, done, n, _, _ in lines)
    report("PASS" if ok else "FAIL", f"throughput on {env.args.device}, text model, {seq} tokens, {what}: " + "; ".join(
        f"batch {b}: e2e {e2e:,.0f} jobs/s ({done}/{n} jobs), raw forward {raw:,.0f} jobs/s, "
        f"{100 * e2e / raw:.1f}%" for b, done, n, e2e, raw in lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("--inferq", "--executor", "--psql", "--dsn", "--work", "--repo"):
        parser.add_argument(a, required=True)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--quick", action="store_true", help="fewer throughput jobs (a CPU rehearsal)")
    args = parser.parse_args()
    env = Env(args)
    t0 = time.time()

    subprocess.run([sys.executable, os.path.join(args.repo, "tests/python/export_models.py"), env.models],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batches = [1, 32, 256]
    jobs = {1: 300, 32: 2000, 256: 4000} if args.quick else {1: 3000, 32: 20000, 256: 40000}
    daemon = start_daemon(env, write_config(env, batches))
    print(f"gpu-check: daemon ready after {time.time() - t0:.0f} s (models exported, executors warmed up)",
          flush=True)
    try:
        before = idle_before(env)
        for check in (check_cuda_equals_cpu, check_device_side_assert, check_oom, check_nvml):
            try:
                check(env)
            except Exception as e:  # one broken check must not hide the others
                report("FAIL", f"{check.__name__}: {e}")
        try:
            check_idle_exit(env, before)
            check_throughput(env, batches, jobs, 64)
            check_throughput(env, batches, jobs, 64, "pf", "2 executors, prefetch on")
        except Exception as e:
            report("FAIL", f"{e}")
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    print(f"gpu-check: {time.time() - t0:.0f} s; daemon log {os.path.join(args.work, 'daemon.log')}")
    print(f"{RESULTS.count('PASS')} passed, {RESULTS.count('FAIL')} failed, {RESULTS.count('SKIP')} skipped")
    return 1 if "FAIL" in RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
