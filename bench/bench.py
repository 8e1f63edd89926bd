#!/usr/bin/env python3
"""Storefront load benchmark: runs every scenario, prints a summary and writes the results.

Started by bench/run.sh, which builds the binaries and installs the load generator first.
Only the Python standard library is used. Every figure that matters is a ratio between two
measurements of the same run, so a busy or slow machine shifts the numbers but not the verdict
much. The server is pinned to BENCH_SERVER_CPUS, the load generator to BENCH_CLIENT_CPUS.
"""

import base64
import datetime
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
RELEASE = os.path.join(TARGET, "release")
STOREFRONT = os.path.join(RELEASE, "storefront")
BASELINE = os.path.join(RELEASE, "baseline")
ARGON2_TIME = os.path.join(RELEASE, "argon2-time")


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name, default):
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


SECONDS = env_float("BENCH_SECONDS", 10)
ROUNDS = env_int("BENCH_ROUNDS", 3)
WARMUP = env_float("BENCH_WARMUP_SECONDS", 3)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 16)
LOGIN_CONNECTIONS = env_int("BENCH_LOGIN_CONNECTIONS", 16)
PASSWORD_FLOOD_CONNECTIONS = env_int("BENCH_PASSWORD_FLOOD_CONNECTIONS", 300)
PROBE_RATE = env_int("BENCH_PROBE_RATE", 50)
CATALOG = env_int("BENCH_CATALOG", 1000)
BIG_CATALOG = env_int("BENCH_BIG_CATALOG", 1_000_000)
STARTUP_RUNS = env_int("BENCH_STARTUP_RUNS", 3)
ARGON2_ROUNDS = env_int("BENCH_ARGON2_ROUNDS", 20)
SERVER_CPUS = os.environ.get("BENCH_SERVER_CPUS", "0")
CLIENT_CPUS = os.environ.get("BENCH_CLIENT_CPUS", "1")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "").strip()
RESULTS_DIR = os.environ.get("BENCH_RESULTS_DIR") or os.path.join(ROOT, "bench", "results")
OHA = os.environ.get("OHA") or shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")

USER = "benchuser"
ADMIN = "benchadmin"
PASSWORD = "bench passphrase 1"
PRODUCTS_QUERY = "query { products(first: 20) { edges { node { id name price stock } } } }"
DEEP_QUERY = (
    "query($after: String) { products(first: 20, after: $after) "
    "{ edges { cursor node { id name price stock } } pageInfo { endCursor hasNextPage } } }"
)
LOGIN_QUERY = (
    "mutation($u: String!, $p: String!) "
    "{ login(input: {username: $u, password: $p}) { accessToken } }"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHILDREN = []  # every process started here, stopped on exit


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_count(spec):
    """How many CPUs a taskset list such as `0`, `0,1` or `0-3` names."""
    count = 0
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-")
            count += int(high) - int(low) + 1
        elif part.strip():
            count += 1
    return count


def pinned(cpus, argv):
    return ["taskset", "-c", cpus, *argv] if shutil.which("taskset") else argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------------------------------------
# Processes


def cpu_seconds(pid):
    """User + system CPU time of a whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid, prefix):
    """User + system CPU time of the threads of `pid` whose name starts with `prefix`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith(prefix):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue  # the thread ended meanwhile
    return total / CLK_TCK


def memory_kib(pid):
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux clear_refs 5); False where that is refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Server:
    """A server process pinned to the server CPUs, answering GraphQL on 127.0.0.1:<port>."""

    def __init__(self, name, argv, env, workdir):
        self.name = name
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        env = {**env, "LISTEN_ADDR": self.addr, "BASELINE_ADDR": self.addr}
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log_file = open(self.log_path, "ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            pinned(SERVER_CPUS, argv),
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=self.log_file,
        )
        CHILDREN.append(self.proc)
        self.pid = self.proc.pid  # taskset execs the server, so this is the server's pid
        self.startup_s = self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request(
                    "POST",
                    "/graphql",
                    body=json.dumps({"query": "{ __typename }"}),
                    headers={"content-type": "application/json"},
                )
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def stop_children():
    for proc in CHILDREN:
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(5)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# GraphQL


def graphql(addr, query, variables=None, token=None):
    host, port = addr.split(":")
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = {"query": query}
    if variables:
        body["variables"] = variables
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/graphql", body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    conn.close()
    if response.status != 200 or payload.get("errors"):
        raise RuntimeError(f"GraphQL HTTP {response.status}: {json.dumps(payload)[:500]}")
    return payload["data"]


def register(addr, username):
    data = graphql(
        addr,
        "mutation($u: String!, $p: String!) "
        "{ register(input: {username: $u, password: $p}) { accessToken } }",
        {"u": username, "p": PASSWORD},
    )
    return data["register"]["accessToken"]


def login(addr, username):
    data = graphql(addr, LOGIN_QUERY, {"u": username, "p": PASSWORD})
    return data["login"]["accessToken"]


def check_page(addr, token, query, variables, expect_first_id=None):
    data = graphql(addr, query, variables, token)
    edges = data["products"]["edges"]
    if len(edges) != 20:
        raise RuntimeError(f"expected a page of 20 products, got {len(edges)}")
    if expect_first_id and edges[0]["node"]["id"] != expect_first_id:
        raise RuntimeError(
            f"deep page starts at {edges[0]['node']['id']}, expected {expect_first_id}"
        )
    return edges


# ---------------------------------------------------------------------------------------------
# Load generator (oha)


def oha_format_flag():
    help_text = subprocess.run([OHA, "--help"], capture_output=True, text=True).stdout
    return ["--output-format", "json"] if "--output-format" in help_text else ["--json"]


OHA_JSON = None


def oha(addr, body, token=None, seconds=SECONDS, connections=CONNECTIONS, rate=None):
    """Starts one oha run; returns the process (see `oha_result`)."""
    global OHA_JSON
    if OHA_JSON is None:
        OHA_JSON = oha_format_flag()
    argv = [OHA, "--no-tui", *OHA_JSON, "-z", f"{seconds}s", "-c", str(connections)]
    if rate:
        argv += ["-q", str(rate)]
    argv += ["-m", "POST", "-H", "content-type: application/json"]
    if token:
        argv += ["-H", f"authorization: Bearer {token}"]
    argv += ["-d", json.dumps(body), f"http://{addr}/graphql"]
    proc = subprocess.Popen(
        pinned(CLIENT_CPUS, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    CHILDREN.append(proc)
    return proc


def oha_result(proc):
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"oha failed ({proc.returncode}): {err[-1000:]}")
    report = json.loads(out)
    summary = report["summary"]
    codes = {str(k): v for k, v in (report.get("statusCodeDistribution") or {}).items()}
    errors = report.get("errorDistribution") or {}
    # Requests that ended in the last instant (cut off by -z) are reported as errors by oha;
    # they are not failures of the server.
    errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
    pct = report.get("latencyPercentiles") or {}
    answered = sum(codes.values())
    if not codes.get("200"):
        raise RuntimeError(f"no request succeeded: status codes {codes}, errors {errors}")
    return {
        "requests": answered,
        "ok": codes.get("200", 0),
        "non_200": answered - codes.get("200", 0),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "duration_s": summary.get("total"),
        "rps": answered / summary["total"] if summary.get("total") else 0.0,
        "p50_ms": (pct.get("p50") or 0) * 1e3,
        "p99_ms": (pct.get("p99") or 0) * 1e3,
        "bytes_per_response": summary.get("sizePerRequest"),
    }


def measured_run(server, body, token=None, connections=CONNECTIONS, rate=None, seconds=SECONDS):
    cpu0 = cpu_seconds(server.pid)
    result = oha_result(oha(server.addr, body, token, seconds, connections, rate))
    cpu1 = cpu_seconds(server.pid)
    result["server_cpu_s"] = cpu1 - cpu0
    result["server_cpu_util"] = (cpu1 - cpu0) / result["duration_s"] if result["duration_s"] else None
    result["cpu_us_per_request"] = (
        (cpu1 - cpu0) * 1e6 / result["requests"] if result["requests"] else None
    )
    if result["non_200"] or result["errors"]:
        log(f"  warning: {result['non_200']} non-200 responses, errors {result['error_kinds']}")
    return result


def summarize(rounds):
    def med(key):
        values = [r[key] for r in rounds if r.get(key) is not None]
        return statistics.median(values) if values else None

    requests = sum(r["requests"] for r in rounds)
    cpu = sum(r.get("server_cpu_s") or 0 for r in rounds)
    return {
        "server_cpu_util_median": med("server_cpu_util"),
        "rps_median": med("rps"),
        "p50_ms_median": med("p50_ms"),
        "p99_ms_median": med("p99_ms"),
        "cpu_us_per_request": cpu * 1e6 / requests if requests and cpu else None,
        "requests": requests,
        "non_200": sum(r["non_200"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "rounds": rounds,
    }


def throughput(label, server, body, token=None, connections=CONNECTIONS, rate=None):
    """Warm-up, then ROUNDS measured runs; medians across rounds and the peak RSS meanwhile."""
    log(f"{label}: warm-up {WARMUP}s, then {ROUNDS} x {SECONDS}s at -c {connections}"
        + (f" -q {rate}" if rate else ""))
    if WARMUP > 0:
        oha_result(oha(server.addr, body, token, WARMUP, connections, rate))
    peak_reset = reset_peak_rss(server.pid)
    load = loadavg()
    rounds = [measured_run(server, body, token, connections, rate) for _ in range(ROUNDS)]
    result = summarize(rounds)
    rss, hwm = memory_kib(server.pid)
    result.update(
        rss_mib_after=rss / 1024,
        peak_rss_mib=hwm / 1024,
        peak_rss_since="scenario start" if peak_reset else "process start",
        loadavg_at_start=load,
        connections=connections,
        rate=rate,
    )
    log(f"  {label}: {result['rps_median']:.0f} req/s, p50 {result['p50_ms_median']:.2f} ms, "
        f"p99 {result['p99_ms_median']:.2f} ms, {result['cpu_us_per_request']:.0f} us CPU/req, "
        f"peak RSS {result['peak_rss_mib']:.1f} MiB")
    return result


# ---------------------------------------------------------------------------------------------
# Catalog set-up


def bench_id(i):
    """The id of bulk product number i: a UUIDv7 with a fixed 2024 timestamp and i as its tail,
    so ids ascend with i (keyset pagination orders by id)."""
    return uuid.UUID(f"01900000-0000-7000-8000-{i:012x}")


def cursor_of(product_id):
    return base64.urlsafe_b64encode(product_id.bytes).rstrip(b"=").decode()


def sqlite_reference_row(db_path):
    """How sea-orm stored the product created through the API: the formats to copy."""
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT typeof(id), length(id), typeof(created_at), created_at, updated_at, "
            "typeof(created_by), typeof(price_cents), typeof(stock), name, name_search "
            "FROM products ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise RuntimeError("no product was created through the API")
    keys = ("id_type", "id_length", "ts_type", "created_at", "updated_at",
            "created_by_type", "price_type", "stock_type", "name", "name_search")
    ref = dict(zip(keys, row))
    if ref["id_type"] not in ("blob", "text") or ref["ts_type"] != "text":
        raise RuntimeError(f"unexpected storage of products in SQLite: {ref}")
    return ref


def sqlite_insert_products(db_path, ref, first, last):
    """Bulk-inserts products first..last (inclusive) in one transaction, in the formats of `ref`."""
    as_blob = ref["id_type"] == "blob" and ref["id_length"] == 16

    def rows():
        for i in range(first, last + 1):
            pid = bench_id(i)
            name = f"Bench product {i:07}"
            yield (
                pid.bytes if as_blob else str(pid),
                name,
                name.lower(),
                "A product inserted by the benchmark.",
                100 + (i * 37) % 50_000,
                i % 1000,
                ref["created_at"],
                ref["updated_at"],
            )

    started = time.perf_counter()
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.executemany(
                "INSERT INTO products (id, name, name_search, description, price_cents, stock, "
                "created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                rows(),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    finally:
        conn.close()
    return count, time.perf_counter() - started


def psql(url, sql):
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def postgres_insert_products(url, first, last):
    started = time.perf_counter()
    psql(
        url,
        "INSERT INTO products (id, name, name_search, description, price_cents, stock, "
        "created_by, created_at, updated_at) SELECT "
        "('01900000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, "
        "'Bench product ' || lpad(i::text, 7, '0'), 'bench product ' || lpad(i::text, 7, '0'), "
        "'A product inserted by the benchmark.', 100 + (i * 37) % 50000, i % 1000, NULL, "
        f"now(), now() FROM generate_series({first}, {last}) AS i; ANALYZE products;",
    )
    return int(psql(url, "SELECT count(*) FROM products")), time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Scenarios


def storefront_env(database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "CARGO"))}
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=secrets.token_hex(32),
        POLICY_DIR=os.path.join(ROOT, "policies"),
        AUTH_RATE_LIMIT_PER_MINUTE="0",
        APP_ENV="development",
    )
    return env


def sqlite_url(path):
    return f"sqlite://{path}?mode=rwc"


def measure_argon2():
    log(f"argon2: timing {ARGON2_ROUNDS} hashes and verifications on CPU {SERVER_CPUS}")
    out = subprocess.run(
        pinned(SERVER_CPUS, [ARGON2_TIME, str(ARGON2_ROUNDS)]),
        capture_output=True, text=True, check=True,
    ).stdout
    result = json.loads(out)
    # One login is one verification; the server's semaphore allows one hash per core. The CPU
    # time of a verification is its cost; its wall time also counts whatever else ran on the
    # core meanwhile (another build, say), so the CPU time gives the steadier limit.
    cores = cpu_count(SERVER_CPUS)
    one_verify_ms = result.get("verify_cpu_ms_median") or result["verify_ms_median"]
    result["server_cores"] = cores
    result["one_verify_ms"] = one_verify_ms
    result["logins_per_s_limit"] = cores * 1000 / one_verify_ms
    log(f"  argon2 ({result['params']}): verify {one_verify_ms:.1f} ms CPU "
        f"({result['verify_ms_median']:.1f} ms wall), hash {result['hash_ms_median']:.1f} ms wall "
        f"-> limit {result['logins_per_s_limit']:.1f} logins/s on {cores} core(s)")
    return result


def measure_startup(workdir):
    """Start-up on a fresh SQLite file until `{ __typename }` answers, and idle RSS after it."""
    runs = []
    for n in range(STARTUP_RUNS):
        run_dir = tempfile.mkdtemp(prefix=f"startup{n}-", dir=workdir)
        server = Server("startup", [STOREFRONT, "serve"],
                        storefront_env(sqlite_url(os.path.join(run_dir, "storefront.db"))), run_dir)
        rss_ready, _ = memory_kib(server.pid)
        time.sleep(1.0)
        rss_idle, hwm = memory_kib(server.pid)
        server.stop()
        runs.append({"startup_ms": server.startup_s * 1e3, "rss_ready_mib": rss_ready / 1024,
                     "idle_rss_mib": rss_idle / 1024, "peak_rss_mib": hwm / 1024})
    result = {
        "startup_ms_median": statistics.median(r["startup_ms"] for r in runs),
        "idle_rss_mib_median": statistics.median(r["idle_rss_mib"] for r in runs),
        "runs": runs,
    }
    log(f"start-up: {result['startup_ms_median']:.0f} ms to the first answer, idle RSS "
        f"{result['idle_rss_mib_median']:.1f} MiB (median of {len(runs)} fresh SQLite starts)")
    return result


def scenario_baseline(workdir):
    server = Server("baseline", [BASELINE], dict(os.environ), workdir)
    try:
        data = graphql(server.addr, PRODUCTS_QUERY)
        assert len(data["products"]["edges"]) == 20, data
        result = throughput("baseline", server, {"query": PRODUCTS_QUERY}, token="x" * 200)
        result["idle_rss_mib"] = None
        return result
    finally:
        server.stop()


def prepare_sqlite_catalog(workdir):
    """A fresh SQLite store with a user, an admin and CATALOG products; returns its state."""
    db_path = os.path.join(workdir, "storefront.db")
    env = storefront_env(sqlite_url(db_path))
    server = Server("storefront-sqlite", [STOREFRONT, "serve"], env, workdir)
    user_token = register(server.addr, USER)
    subprocess.run(
        [STOREFRONT, "create-admin", "--username", ADMIN],
        env={**env, "ADMIN_PASSWORD": PASSWORD}, cwd=workdir,
        capture_output=True, check=True,
    )
    admin_token = login(server.addr, ADMIN)
    graphql(
        server.addr,
        'mutation { createProduct(input: {name: "Reference product", description: "Made '
        'through the API", price: "12.50", stock: 5}) { id } }',
        token=admin_token,
    )
    ref = sqlite_reference_row(db_path)
    log(f"SQLite row written by the API: id {ref['id_type']}({ref['id_length']}), "
        f"created_at {ref['created_at']!r}")
    count, took = sqlite_insert_products(db_path, ref, 1, CATALOG - 1)
    log(f"  catalog: {count} products ({took:.1f}s to insert)")
    # A fresh process for the measurements: the set-up's argon2 hashes (register, create-admin,
    # login) leave ~19 MiB blocks in the allocator, which would count as RSS of the products
    # scenario. The token stays valid: same secret, same database.
    server.stop()
    server = Server("storefront-sqlite", [STOREFRONT, "serve"], env, workdir)
    return {"server": server, "env": env, "db_path": db_path, "ref": ref,
            "token": user_token, "count": count}


def deep_page(label, server, token, position):
    """p50 of a page of 20 after the cursor of bulk product `position`."""
    after = cursor_of(bench_id(position))
    variables = {"after": after}
    check_page(server.addr, token, DEEP_QUERY, variables, expect_first_id=str(bench_id(position + 1)))
    result = throughput(label, server, {"query": DEEP_QUERY, "variables": variables}, token,
                        connections=1)
    result["position"] = position
    return result


def signed_in_total(addr):
    """`storefront_logins_total{outcome="success"}` from the server's /metrics."""
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith('storefront_logins_total{outcome="success"}'):
            return int(float(line.split()[-1]))
    raise RuntimeError("/metrics has no storefront_logins_total{outcome=\"success\"}")


def login_flood(addr, bodies, seconds):
    """One oha per body, one connection each, started together; returns their processes."""
    return [oha(addr, body, None, seconds, 1) for body in bodies]


def merged_result(procs):
    """The results of oha runs that ran side by side, as one run's."""
    parts = [oha_result(proc) for proc in procs]
    duration = max(part["duration_s"] or 0 for part in parts)
    requests = sum(part["requests"] for part in parts)
    return {
        "requests": requests,
        "ok": sum(part["ok"] for part in parts),
        "non_200": sum(part["non_200"] for part in parts),
        "errors": sum(part["errors"] for part in parts),
        "error_kinds": {},
        "duration_s": duration,
        "rps": requests / duration if duration else 0.0,
        # Latencies: the median of the runs' medians, the worst of their p99s.
        "p50_ms": statistics.median(part["p50_ms"] for part in parts),
        "p99_ms": max(part["p99_ms"] for part in parts),
        "bytes_per_response": parts[0]["bytes_per_response"],
    }


def scenario_login_flood(server, token):
    # The hash time is measured here, next to the flood, so both see the same machine load.
    argon2 = measure_argon2()
    body = {"query": PRODUCTS_QUERY}
    # One account per connection, signing in with the right password over and over: the
    # sign-in lock allows 5 attempts in flight per (username, address), so one username on
    # many connections would measure refusals, not hashing.
    users = [f"{USER}-flood{i}" for i in range(LOGIN_CONNECTIONS)]
    for user in users:
        register(server.addr, user)
    login_bodies = [{"query": LOGIN_QUERY, "variables": {"u": user, "p": PASSWORD}}
                    for user in users]
    log(f"login flood: products probe at {PROBE_RATE} req/s over one connection, "
        f"unloaded then beside {LOGIN_CONNECTIONS} connections of logins (an account each)")
    unloaded = throughput("products probe, unloaded", server, body, token, connections=1,
                          rate=PROBE_RATE)
    if WARMUP > 0:
        merged_result(login_flood(server.addr, login_bodies, WARMUP))
        time.sleep(1.0)  # the sign-ins oha cut off at its deadline finish hashing
    peak_reset = reset_peak_rss(server.pid)
    load = loadavg()
    flood_rounds, probe_rounds = [], []
    hashing_cpu_s, logins = 0.0, 0
    for _ in range(ROUNDS):
        cpu0 = cpu_seconds(server.pid)
        hashing0 = thread_cpu_seconds(server.pid, "argon2-")
        signed_in0 = signed_in_total(server.addr)
        flood = login_flood(server.addr, login_bodies, SECONDS)
        probe = oha(server.addr, body, token, SECONDS, 1, PROBE_RATE)
        flood_result, probe_result = merged_result(flood), oha_result(probe)
        cpu1 = cpu_seconds(server.pid)
        hashing_cpu_s += thread_cpu_seconds(server.pid, "argon2-") - hashing0
        # A refused sign-in (a full hashing queue, say) is HTTP 200 too, and fast: count the
        # sign-ins the server says succeeded, not oha's answers.
        signed_in = signed_in_total(server.addr) - signed_in0
        flood_result["refused"] = flood_result["requests"] - signed_in
        flood_result["ok"] = signed_in
        flood_result["rps"] = signed_in / flood_result["duration_s"]
        logins += signed_in
        if flood_result["refused"] > 0:
            log(f"  warning: {flood_result['refused']} sign-ins of the flood were refused")
        # The server's CPU time is charged to the logins: the probe's share is small.
        flood_result["server_cpu_s"] = cpu1 - cpu0
        flood_result["server_cpu_util"] = (cpu1 - cpu0) / flood_result["duration_s"]
        flood_rounds.append(flood_result)
        probe_rounds.append(probe_result)
        # oha stops at its deadline with sign-ins still queued for hashing in the server: let
        # them finish, or the next round (and the check below) meets a full hashing queue.
        time.sleep(1.0)
    login(server.addr, USER)  # logins still succeed after the flood (no limiter in the way)
    # Timed again after the flood: this machine's speed drifts by tens of percent over minutes.
    argon2_after = measure_argon2()
    flood, loaded = summarize(flood_rounds), summarize(probe_rounds)
    rss, hwm = memory_kib(server.pid)
    time.sleep(1.0)
    rss_settled, _ = memory_kib(server.pid)
    standalone_ms = (argon2["one_verify_ms"] + argon2_after["one_verify_ms"]) / 2
    in_flood_ms = hashing_cpu_s * 1e3 / logins if logins else None
    # One hash's time, measured in the same run: the CPU the server's hashing threads spent per
    # login during the flood. Unlike argon2-time's figure (taken before and after the flood, in
    # a separate process), it cannot drift from the flood's conditions; the two are compared
    # below, so a hash made slower by the server itself would still show.
    hash_ms = in_flood_ms or standalone_ms
    cores = argon2["server_cores"]
    limit = cores * 1000 / hash_ms
    result = {
        "argon2": argon2,
        "argon2_after": argon2_after,
        "login": flood,
        "products_unloaded": unloaded,
        "products_loaded": loaded,
        "login_rps_median": flood["rps_median"],
        "login_limit_per_s": limit,
        "login_vs_limit": flood["rps_median"] / limit,
        "login_vs_standalone_limit": flood["rps_median"] * standalone_ms / (cores * 1000),
        "hash_in_flood_vs_standalone": in_flood_ms / standalone_ms if in_flood_ms else None,
        # How much of a login's server CPU time is the argon2 verification itself.
        "login_cpu_share_argon2": (hash_ms * 1e3 / flood["cpu_us_per_request"]
                                   if flood["cpu_us_per_request"] else None),
        # The hashing threads' own CPU per login during the flood: argon2 as it ran in the
        # server, beside the load; against argon2-time's figure it shows the machine's drift.
        "hash_cpu_ms_per_login_in_flood": in_flood_ms,
        "products_p99_unloaded_ms": unloaded["p99_ms_median"],
        "products_p99_loaded_ms": loaded["p99_ms_median"],
        "products_p99_loaded_vs_unloaded": loaded["p99_ms_median"] / unloaded["p99_ms_median"],
        "peak_rss_mib": hwm / 1024,
        "peak_rss_since": "scenario start" if peak_reset else "process start",
        "rss_mib_after": rss / 1024,
        "rss_mib_1s_after": rss_settled / 1024,
        "loadavg_at_start": load,
        "login_connections": LOGIN_CONNECTIONS,
    }
    if flood["non_200"] or flood["errors"]:
        log(f"  warning: login flood had {flood['non_200']} non-200 and {flood['errors']} errors")
    if result["login_vs_limit"] > 1.5:
        log("  warning: logins faster than argon2 allows: are they refused before hashing?")
    if in_flood_ms:
        log(f"  hashing threads: {in_flood_ms:.1f} ms CPU per login during the flood "
            f"(argon2-time: {argon2['one_verify_ms']:.1f} ms before, "
            f"{argon2_after['one_verify_ms']:.1f} ms after)")
    log(f"  logins {flood['rps_median']:.1f}/s vs limit {limit:.1f}/s; "
        f"products p99 {unloaded['p99_ms_median']:.2f} -> {loaded['p99_ms_median']:.2f} ms; "
        f"peak RSS {result['peak_rss_mib']:.1f} MiB, {rss_settled / 1024:.1f} MiB 1 s after")
    return result


CHANGE_QUERY = (
    "mutation($c: String!, $n: String!) "
    "{ changePassword(currentPassword: $c, newPassword: $n) { accessToken } }"
)


def timed_login_ms(addr, username):
    started = time.perf_counter()
    login(addr, username)  # raises unless the sign-in succeeded
    return (time.perf_counter() - started) * 1e3


def scenario_password_change_flood(server, label):
    """Hundreds of concurrent changePassword calls from one signed-in account (wrong current
    passwords, so the account's change lock engages too), and meanwhile another user signs in
    every 200 ms: how long do those sign-ins take?"""
    suffix = secrets.token_hex(3)
    flooder, bystander = f"flooder{suffix}", f"bystander{suffix}"
    token = register(server.addr, flooder)
    register(server.addr, bystander)
    alone = sorted(timed_login_ms(server.addr, bystander) for _ in range(5))
    body = {"query": CHANGE_QUERY,
            "variables": {"c": "not the current passphrase", "n": "a brand new passphrase 42"}}
    log(f"password-change flood ({label}): {PASSWORD_FLOOD_CONNECTIONS} connections of "
        f"changePassword from one account for {SECONDS:.0f} s, another user signing in "
        f"every 200 ms")
    flood = oha(server.addr, body, token, SECONDS, PASSWORD_FLOOD_CONNECTIONS)
    time.sleep(1.0)  # let every connection open and start sending
    during = []
    deadline = time.monotonic() + max(SECONDS - 2.0, 1.0)
    while time.monotonic() < deadline:
        during.append(timed_login_ms(server.addr, bystander))
        time.sleep(0.2)
    flood_result = oha_result(flood)
    during.sort()
    result = {
        "connections": PASSWORD_FLOOD_CONNECTIONS,
        "flood": flood_result,
        "sign_in_alone_ms_median": statistics.median(alone),
        "sign_ins_during": len(during),
        "sign_in_during_ms_median": statistics.median(during),
        "sign_in_during_ms_max": during[-1],
    }
    log(f"  {flood_result['rps']:.0f} changePassword/s answered; bystander sign-in "
        f"{result['sign_in_alone_ms_median']:.0f} ms alone, during the flood median "
        f"{result['sign_in_during_ms_median']:.0f} ms, max {result['sign_in_during_ms_max']:.0f} ms "
        f"({len(during)} sign-ins)")
    return result


def exponential_document(levels=25):
    """About 1 KB whose fragments spread each other three times over: 3^25 fields expanded."""
    lines = ["query Bomb { ...F0 }"]
    lines += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} ...F{i + 1} }}"
              for i in range(levels)]
    lines.append(f"fragment F{levels} on Query {{ __typename }}")
    return "\n".join(lines) + "\n"


def healthz_ms(addr):
    host, port = addr.split(":")
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"/healthz answered {response.status}")
    return (time.perf_counter() - started) * 1e3


def scenario_expensive_documents(server, token):
    """Two clients keep sending the exponential fragment document (refused by cost) while the
    products query is probed at BENCH_PROBE_RATE and /healthz every 50 ms."""
    bomb = {"query": exponential_document()}
    log(f"expensive documents: 2 connections sending a {len(bomb['query'])}-byte exponential "
        f"fragment document, products probe at {PROBE_RATE} req/s, /healthz every 50 ms")
    flood = oha(server.addr, bomb, None, SECONDS, 2)
    probe = oha(server.addr, {"query": PRODUCTS_QUERY}, token, SECONDS, 1, PROBE_RATE)
    health = []
    deadline = time.monotonic() + max(SECONDS - 1.0, 1.0)
    while time.monotonic() < deadline:
        health.append(healthz_ms(server.addr))
        time.sleep(0.05)
    flood_result, probe_result = oha_result(flood), oha_result(probe)
    health.sort()
    result = {
        "bomb_bytes": len(bomb["query"]),
        "bombs": flood_result,
        "products_probe": probe_result,
        "healthz_ms_median": statistics.median(health),
        "healthz_ms_max": health[-1],
    }
    log(f"  {flood_result['rps']:.0f} documents/s refused; products p99 "
        f"{probe_result['p99_ms']:.2f} ms; /healthz median {result['healthz_ms_median']:.2f} ms, "
        f"max {result['healthz_ms_max']:.2f} ms")
    return result


def scenario_sqlite(workdir, results):
    state = prepare_sqlite_catalog(workdir)
    server, token = state["server"], state["token"]
    try:
        # The same stack with no resolver and no database: HTTP, token check and GraphQL only.
        results["graphql_floor"] = throughput(
            "GraphQL floor ({ __typename })", server, {"query": "{ __typename }"}, token)
        check_page(server.addr, token, PRODUCTS_QUERY, None)
        results["products_sqlite"] = throughput(
            "products (SQLite)", server, {"query": PRODUCTS_QUERY}, token)
        results["products_sqlite"]["catalog"] = state["count"]
        results["login_flood"] = scenario_login_flood(server, token)
        results["argon2"] = results["login_flood"]["argon2"]
        results["password_flood_sqlite"] = scenario_password_change_flood(server, "SQLite")
        results["expensive_documents"] = scenario_expensive_documents(server, token)
    finally:
        server.stop()

    # With the catalog cache off, every page is read from the database: the database path on
    # its own, and the deep pages, which must measure the index rather than the cache.
    uncached_env = {**state["env"], "CATALOG_CACHE_MB": "0"}
    server = Server("storefront-sqlite-uncached", [STOREFRONT, "serve"], uncached_env, workdir)
    try:
        results["products_sqlite_uncached"] = throughput(
            "products (SQLite, catalog cache off)", server, {"query": PRODUCTS_QUERY}, token)
        results["deep_page_small"] = deep_page(
            f"deep page, {state['count']} products, cache off", server, token,
            int(CATALOG * 0.9))
        results["deep_page_small"]["catalog"] = state["count"]
    finally:
        server.stop()

    if BIG_CATALOG <= CATALOG:
        return
    log(f"catalog growth: inserting up to {BIG_CATALOG} products with the server stopped")
    count, took = sqlite_insert_products(state["db_path"], state["ref"], CATALOG, BIG_CATALOG - 1)
    log(f"  catalog: {count} products ({took:.1f}s to insert), "
        f"file {os.path.getsize(state['db_path']) / 2**20:.0f} MiB")
    server = Server("storefront-sqlite-big", [STOREFRONT, "serve"], uncached_env, workdir)
    try:
        results["startup_big_catalog_ms"] = server.startup_s * 1e3
        results["deep_page_big"] = deep_page(
            f"deep page, {count} products, cache off", server, token, int(BIG_CATALOG * 0.9))
        results["deep_page_big"]["catalog"] = count
        results["deep_page_big"]["insert_s"] = took
    finally:
        server.stop()


def scenario_postgres(workdir):
    name = f"storefront_bench_{os.getpid()}_{secrets.token_hex(3)}"
    psql(POSTGRES_URL, f"CREATE DATABASE {name}")
    url = with_database(POSTGRES_URL, name)
    server = None
    try:
        env = storefront_env(url)
        server = Server("storefront-postgres", [STOREFRONT, "serve"], env, workdir)
        startup_ms = server.startup_s * 1e3
        token = register(server.addr, USER)
        count, took = postgres_insert_products(url, 1, CATALOG)
        log(f"PostgreSQL catalog: {count} products ({took:.1f}s to insert)")
        check_page(server.addr, token, PRODUCTS_QUERY, None)
        result = throughput("products (PostgreSQL)", server, {"query": PRODUCTS_QUERY}, token)
        result.update(catalog=count, startup_ms=startup_ms)
        result["password_flood"] = scenario_password_change_flood(server, "PostgreSQL")
        server.stop()
        server = Server("storefront-postgres-uncached", [STOREFRONT, "serve"],
                        {**env, "CATALOG_CACHE_MB": "0"}, workdir)
        result["uncached"] = throughput("products (PostgreSQL, catalog cache off)", server,
                                        {"query": PRODUCTS_QUERY}, token)
        return result
    finally:
        if server:
            server.stop()
        try:
            psql(POSTGRES_URL, f"DROP DATABASE IF EXISTS {name}")
        except subprocess.CalledProcessError as e:
            log(f"could not drop database {name}: {e.stderr.strip()}")


# ---------------------------------------------------------------------------------------------
# Report


def mib_to_mb(mib):
    return None if mib is None else mib * 1.048576


def ratio(a, b):
    return a / b if a is not None and b else None


def verdicts(results):
    base = results.get("baseline", {})
    sqlite_products = results.get("products_sqlite", {})
    flood = results.get("login_flood", {})
    small, big = results.get("deep_page_small"), results.get("deep_page_big")
    startup = results.get("startup", {})
    rows = [
        ("products/baseline req/s (SQLite)",
         ratio(sqlite_products.get("rps_median"), base.get("rps_median")), ">=", 0.15, ""),
        ("baseline/products server CPU per request (SQLite)",
         ratio(base.get("cpu_us_per_request"), sqlite_products.get("cpu_us_per_request")),
         "info", None, ""),
    ]
    uncached = results.get("products_sqlite_uncached", {})
    rows.append(("products/baseline req/s (SQLite, catalog cache off)",
                 ratio(uncached.get("rps_median"), base.get("rps_median")), "info", None, ""))
    if "products_postgres" in results:
        pg = results["products_postgres"]
        rows.append(("products/baseline req/s (PostgreSQL)",
                     ratio(pg.get("rps_median"), base.get("rps_median")), ">=", 0.15, ""))
        rows.append(("products/baseline req/s (PostgreSQL, catalog cache off)",
                     ratio(pg.get("uncached", {}).get("rps_median"), base.get("rps_median")),
                     "info", None, ""))
    rows += [
        ("login throughput / argon2 limit (hash time measured in the flood)",
         flood.get("login_vs_limit"), ">=", 0.9, ""),
        ("login throughput / argon2 limit (hash time from argon2-time)",
         flood.get("login_vs_standalone_limit"), "info", None, ""),
        ("hash time in the flood / argon2-time", flood.get("hash_in_flood_vs_standalone"),
         "info", None, ""),
        ("hashing CPU / server CPU per login", flood.get("login_cpu_share_argon2"), "info", None,
         ""),
        ("hashing threads' CPU per login during the flood", flood.get(
            "hash_cpu_ms_per_login_in_flood"), "info", None, " ms"),
        ("products p99 loaded / unloaded", flood.get("products_p99_loaded_vs_unloaded"),
         "<=", 3.0, ""),
        ("products p99 while exponential documents are sent",
         results.get("expensive_documents", {}).get("products_probe", {}).get("p99_ms"), "<=",
         100.0, " ms"),
        ("slowest /healthz while exponential documents are sent",
         results.get("expensive_documents", {}).get("healthz_ms_max"), "<=", 100.0, " ms"),
        ("slowest sign-in during a changePassword flood (SQLite)",
         results.get("password_flood_sqlite", {}).get("sign_in_during_ms_max"), "<=", 2000.0,
         " ms"),
        ("slowest sign-in during a changePassword flood (PostgreSQL)",
         results.get("products_postgres", {}).get("password_flood", {}).get(
             "sign_in_during_ms_max"), "<=", 2000.0, " ms"),
        (f"deep page p50 {big['catalog'] if big else '?'} / {small['catalog'] if small else '?'}",
         ratio(big and big["p50_ms_median"], small and small["p50_ms_median"]), "<=", 1.5, ""),
        # The targets are in MB (10^6 bytes); RSS is measured in MiB.
        ("idle RSS", mib_to_mb(startup.get("idle_rss_mib_median")), "<=", 30.0, " MB"),
        ("peak RSS during products", mib_to_mb(sqlite_products.get("peak_rss_mib")), "<=", 100.0,
         " MB"),
        ("start-up", startup.get("startup_ms_median") and startup["startup_ms_median"] / 1e3,
         "<=", 1.0, " s"),
    ]
    out = []
    for name, value, op, target, unit in rows:
        if value is None or op == "info":
            ok = None
        else:
            ok = value >= target if op == ">=" else value <= target
        out.append({"name": name, "value": value, "op": op, "target": target, "unit": unit,
                    "pass": ok})
    return out


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results):
    lines = [f"# Storefront benchmark, {results['meta']['finished']}", ""]
    meta = results["meta"]
    lines.append(
        f"commit {meta['commit']}, {meta['cpus']} CPUs ({meta['cpu_model']}), server on CPU "
        f"{meta['server_cpus']}, load generator ({meta['load_generator']}) on CPU "
        f"{meta['client_cpus']}; {meta['rounds']} rounds x {meta['seconds']} s after "
        f"{meta['warmup_seconds']} s warm-up; load average at start {meta['loadavg_start']:.2f}."
    )
    lines += ["", "| ratio | measured | target | verdict |", "| --- | ---: | ---: | --- |"]
    for v in results["verdicts"]:
        if v["op"] == "info":
            lines.append(f"| {v['name']} | {fmt(v['value'])}{v['unit']} | - | information |")
            continue
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[v["pass"]]
        lines.append(f"| {v['name']} | {fmt(v['value'])}{v['unit']} | {v['op']} "
                     f"{v['target']}{v['unit']} | {verdict} |")
    lines += ["", "| scenario | req/s | p50 ms | p99 ms | server CPU us/req | server CPU busy "
              "| peak RSS MiB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table = [
        ("baseline (bare axum, -c %d)" % CONNECTIONS, results.get("baseline")),
        ("GraphQL floor, `{ __typename }` (-c %d)" % CONNECTIONS, results.get("graphql_floor")),
        ("products, SQLite (-c %d)" % CONNECTIONS, results.get("products_sqlite")),
        ("products, SQLite, catalog cache off (-c %d)" % CONNECTIONS,
         results.get("products_sqlite_uncached")),
        ("products, PostgreSQL (-c %d)" % CONNECTIONS, results.get("products_postgres")),
        ("products, PostgreSQL, catalog cache off (-c %d)" % CONNECTIONS,
         (results.get("products_postgres") or {}).get("uncached")),
        ("deep page, small catalog, cache off (-c 1)", results.get("deep_page_small")),
        ("deep page, big catalog, cache off (-c 1)", results.get("deep_page_big")),
    ]
    flood = results.get("login_flood")
    if flood:
        table += [
            (f"products probe, unloaded (-c 1 -q {PROBE_RATE})",
             dict(flood["products_unloaded"], cpu_us_per_request=None, server_cpu_util_median=None)),
            ("products probe, during login flood", dict(flood["products_loaded"],
                                                       peak_rss_mib=flood["peak_rss_mib"])),
            (f"login flood (-c {LOGIN_CONNECTIONS})", dict(flood["login"],
                                                          peak_rss_mib=flood["peak_rss_mib"])),
        ]
    for name, r in table:
        if not r:
            continue
        util = r.get("server_cpu_util_median")
        lines.append(f"| {name} | {fmt(r.get('rps_median'), 1)} | {fmt(r.get('p50_ms_median'))} "
                     f"| {fmt(r.get('p99_ms_median'))} | {fmt(r.get('cpu_us_per_request'), 0)} "
                     f"| {'-' if util is None else f'{util * 100:.0f}%'} "
                     f"| {fmt(r.get('peak_rss_mib'), 1)} |")
    argon2 = results.get("argon2")
    if argon2:
        lines += ["", f"argon2id ({argon2['params']}): one verification takes "
                  f"{argon2['one_verify_ms']:.1f} ms of CPU ({argon2['verify_ms_median']:.1f} ms "
                  f"wall; a hash {argon2['hash_ms_median']:.1f} ms wall), so at most "
                  f"{argon2['logins_per_s_limit']:.1f} logins/s on {argon2['server_cores']} "
                  f"server core(s)."]
    if flood:
        lines += [f"RSS after the login flood: {flood['rss_mib_1s_after']:.1f} MiB (1 s later)."]
    startup = results.get("startup")
    if startup:
        lines += [f"Start-up on a fresh SQLite file: {startup['startup_ms_median']:.0f} ms "
                  f"(median of {len(startup['runs'])}); idle RSS "
                  f"{startup['idle_rss_mib_median']:.1f} MiB."]
    if results.get("startup_big_catalog_ms"):
        lines += [f"Start-up with the big catalog: {results['startup_big_catalog_ms']:.0f} ms."]
    return "\n".join(lines) + "\n"


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    for path in (STOREFRONT, BASELINE, ARGON2_TIME, OHA):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is missing; run bench/run.sh, which builds and installs it")
    if CATALOG < 100:
        sys.exit("bench: BENCH_CATALOG must be at least 100 (a deep page starts at 90 %)")
    workdir = tempfile.mkdtemp(prefix="storefront-bench-")
    oha_version = subprocess.run([OHA, "--version"], capture_output=True, text=True).stdout
    cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    results = {"meta": {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": commit, "cpus": os.cpu_count(), "cpu_model": cpu_model,
        "server_cpus": SERVER_CPUS, "client_cpus": CLIENT_CPUS,
        "load_generator": oha_version.strip(), "seconds": SECONDS, "rounds": ROUNDS,
        "warmup_seconds": WARMUP, "connections": CONNECTIONS, "catalog": CATALOG,
        "big_catalog": BIG_CATALOG, "loadavg_start": loadavg(), "workdir": workdir,
    }}
    log(f"workdir {workdir}; server on CPU {SERVER_CPUS}, load generator on CPU {CLIENT_CPUS}")
    failed = None
    try:
        results["startup"] = measure_startup(workdir)
        results["baseline"] = scenario_baseline(workdir)
        scenario_sqlite(workdir, results)
        if POSTGRES_URL:
            if shutil.which("psql"):
                results["products_postgres"] = scenario_postgres(workdir)
            else:
                log("BENCH_POSTGRES_URL is set but psql is missing: PostgreSQL skipped")
    except (Exception, KeyboardInterrupt, SystemExit) as e:  # noqa: BLE001 - report what we have
        failed = e
        log(f"benchmark stopped: {e!r}")
    finally:
        stop_children()

    results["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    results["verdicts"] = verdicts(results)
    if failed:
        results["meta"]["error"] = repr(failed)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(RESULTS_DIR, f"{stamp}.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    md = markdown(results)
    with open(os.path.join(RESULTS_DIR, f"{stamp}.md"), "w") as f:
        f.write(md)
    for name, src in (("latest.json", f"{stamp}.json"), ("latest.md", f"{stamp}.md")):
        shutil.copyfile(os.path.join(RESULTS_DIR, src), os.path.join(RESULTS_DIR, name))
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(md)
    print(f"results: {json_path}")
    print(f"         {os.path.join(RESULTS_DIR, 'latest.json')} (copy)")
    if failed:
        print(f"the benchmark did not finish: {failed!r}; server logs kept in {workdir}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_children()
