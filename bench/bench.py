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
import math
import os
import platform
import random
import re
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
FANOUT_CLIENT = os.path.join(RELEASE, "fanout")


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
POSTGRES_BIG = env_int("BENCH_POSTGRES_BIG", 1)
SHAPE_SECONDS = env_float("BENCH_SHAPE_SECONDS", 2)
SHAPE_ROUNDS = env_int("BENCH_SHAPE_ROUNDS", 3)
SHAPE_WARMUP = env_float("BENCH_SHAPE_WARMUP_SECONDS", 1)
SEARCH_MAX_MS = 20.0
# Subscription fan-out (scenario 7): subscriber counts, one fresh server each ("0": skipped).
FANOUT = [int(n) for n in os.environ.get("BENCH_FANOUT", "1000").replace(" ", "").split(",")
          if n and int(n) > 0]
FANOUT_CHANGES = env_int("BENCH_FANOUT_CHANGES", 100)
FANOUT_GAP_MS = env_int("BENCH_FANOUT_GAP_MS", 50)
FANOUT_SUBSCRIPTION = os.environ.get("BENCH_FANOUT_SUBSCRIPTION", "").strip() or "productChanged"
# BENCH_ONLY=fanout: the fan-out scenario alone (no oha needed).
ONLY = os.environ.get("BENCH_ONLY", "").strip()
RESULTS_DIR = os.environ.get("BENCH_RESULTS_DIR") or os.path.join(ROOT, "bench", "results")
OHA = os.environ.get("OHA") or shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")

USER = "benchuser"
ADMIN = "benchadmin"
PASSWORD = "bench passphrase 1"
PRODUCTS_QUERY = "query { products(first: 20) { edges { node { id name price stock } } } }"
# A product list page as a client writes it (one document, the list's arguments as variables):
# what every page shape below sends.
LIST_QUERY = (
    "query($after: String, $orderBy: [ProductOrder!], $filter: ProductFilter) "
    "{ products(first: 20, after: $after, orderBy: $orderBy, filter: $filter) "
    "{ edges { cursor node { id name price stock } } pageInfo { endCursor hasNextPage } } }"
)
# The same list, with what the checks compare (not measured).
LIST_CHECK_QUERY = (
    "query($after: String, $orderBy: [ProductOrder!], $filter: ProductFilter) "
    "{ products(first: 20, after: $after, orderBy: $orderBy, filter: $filter) "
    "{ totalCount edges { cursor node { id name description price stock } } } }"
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


def throughput(label, server, body, token=None, connections=CONNECTIONS, rate=None,
               rounds=None, seconds=None, warmup=None):
    """Warm-up, then ROUNDS measured runs; medians across rounds and the peak RSS meanwhile."""
    rounds = ROUNDS if rounds is None else rounds
    seconds = SECONDS if seconds is None else seconds
    warmup = WARMUP if warmup is None else warmup
    log(f"{label}: warm-up {warmup}s, then {rounds} x {seconds}s at -c {connections}"
        + (f" -q {rate}" if rate else ""))
    if warmup > 0:
        oha_result(oha(server.addr, body, token, warmup, connections, rate))
    peak_reset = reset_peak_rss(server.pid)
    load = loadavg()
    rounds = [measured_run(server, body, token, connections, rate, seconds)
              for _ in range(rounds)]
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
#
# Bulk products look like a shop's: names of 3 words and descriptions of 8-12 words drawn from a
# vocabulary of VOCABULARY_SIZE made-up words (so one word is in about 0.5 % of the products:
# a search finds a realistic handful, not all rows and not none), prices spread log-uniformly
# from 1.00 to 2,000.00, stock 0 for about 10 % of them, and creation times 10 s apart in id
# order (so the default order, CREATED_AT, is the order of the bulk ids).

VOCABULARY_SIZE = 2000
BULK_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z: bulk products are older than the API's
FILTER_PRICE_MIN = "100.00"  # the filtered page: priceMin 100.00 and inStock (about a third)


def make_vocabulary(size=VOCABULARY_SIZE, seed=13):
    """`size` distinct pronounceable lower-case ASCII words (one tokenizer token each)."""
    rng = random.Random(seed)
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "br", "cr", "dr", "fl", "gr", "pl", "pr", "st", "tr", "ch", "sh"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"]
    codas = ["", "", "", "n", "r", "s", "l", "m", "t"]
    words = []
    seen = set()
    while len(words) < size:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.choice((2, 2, 3))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


VOCABULARY = make_vocabulary()
# Bulk rows store lower() as their folded search text: right for ASCII words only.
assert all(word.isascii() for word in VOCABULARY)


def pick_search_term(words):
    """What a user has typed so far: a word of at least 7 letters without its last 2, where that
    prefix starts no other word of the vocabulary (so it matches one word's share of rows)."""
    for word in words:
        if len(word) < 7:
            continue
        prefix = word[:-2]
        if sum(1 for w in words if w.startswith(prefix)) == 1:
            return prefix, word
    raise RuntimeError("no search term in the vocabulary")


SEARCH_TERM, SEARCH_WORD = pick_search_term(VOCABULARY)


def bench_id(i):
    """The id of bulk product number i: a UUIDv7 with a fixed 2024 timestamp and i as its tail,
    so ids ascend with i (keyset pagination orders by id)."""
    return uuid.UUID(f"01900000-0000-7000-8000-{i:012x}")


BULK_ID_BASE = uuid.UUID("01900000-0000-7000-8000-000000000000").int
DAY_S = 86_400
_days = {}


def bulk_created_at(i):
    """Creation time of bulk product i as SQLite stores it (sqlx's RFC 3339 with 9 fraction
    digits; the nanoseconds never end in 000, so chrono writes all 9, as it does for the server's
    own rows): 10 s apart, in id order."""
    at = BULK_EPOCH_S + 10 * i
    day, second = divmod(at, DAY_S)
    date = _days.get(day)
    if date is None:
        date = _days[day] = time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return (f"{date}T{hour:02d}:{minute:02d}:{second:02d}."
            f"{(i % 1_000_000) * 1000 + 7:09d}+00:00")


RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_nanos(text):
    """Nanoseconds since the epoch of a timestamp as SQLite holds it (what a cursor carries)."""
    match = RFC3339.match(text)
    if not match:
        raise RuntimeError(f"unexpected timestamp format in SQLite: {text!r}")
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    seconds = int(datetime.datetime.fromisoformat(whole + zone).timestamp())
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def cursor_of(product_id):
    """A cursor of the first format (an id alone); kept for reference, the shapes use
    `keyset_cursor`."""
    return base64.urlsafe_b64encode(product_id.bytes).rstrip(b"=").decode()


def keyset_cursor(fingerprint, keys, product_id):
    """A cursor in the server's current format (src/pagination.rs, `Cursor::Keyset`): version 2,
    the list's 8-byte fingerprint, the key count, each key (here integers: `i` and 8 bytes big
    endian) and the 16-byte id; URL-safe base64 without padding. The fingerprint is copied from
    a cursor the server made for the same order and filter."""
    out = bytearray([2]) + fingerprint + bytes([len(keys)])
    for key in keys:
        out += b"i" + int(key).to_bytes(8, "big", signed=True)
    out += product_id.bytes
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode()


def cursor_fingerprint(cursor):
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    if not raw or raw[0] != 2:
        raise RuntimeError(f"the server's cursor has an unknown format: {cursor!r}")
    return raw[1:9]


# The columns the bulk inserts write; a column added to `products` later must be added here too
# (or the set-up stops), so bulk rows never silently differ from the API's.
PRODUCT_COLUMNS = {"id", "name", "name_search", "name_folded", "description",
                   "description_folded", "price_cents", "stock", "created_by", "created_at",
                   "updated_at", "version"}
POSTGRES_GENERATED_COLUMNS = {"search_vector"}  # filled by PostgreSQL itself


def sqlite_reference_row(db_path):
    """How sea-orm stored the product created through the API: the formats to copy."""
    with sqlite3.connect(db_path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(products)")}
        if columns != PRODUCT_COLUMNS:
            raise RuntimeError(f"products has columns {sorted(columns)}; the benchmark writes "
                               f"{sorted(PRODUCT_COLUMNS)}: update bench/bench.py")
        row = conn.execute(
            "SELECT typeof(id), length(id), typeof(created_at), created_at, updated_at, "
            "typeof(created_by), typeof(price_cents), typeof(stock), name, name_search, "
            "name_folded, typeof(version), version, rowid FROM products "
            "ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise RuntimeError("no product was created through the API")
        # The full-text index holds the API's row (the triggers of products_fts fired).
        indexed = conn.execute(
            "SELECT rowid FROM products_fts WHERE products_fts MATCH 'reference'").fetchall()
    keys = ("id_type", "id_length", "ts_type", "created_at", "updated_at",
            "created_by_type", "price_type", "stock_type", "name", "name_search",
            "name_folded", "version_type", "version", "rowid")
    ref = dict(zip(keys, row))
    if ref["id_type"] not in ("blob", "text") or ref["ts_type"] != "text":
        raise RuntimeError(f"unexpected storage of products in SQLite: {ref}")
    rfc3339_nanos(ref["created_at"])  # a format the cursors can be made from
    if not ref["created_at"].endswith("+00:00") or "T" not in ref["created_at"]:
        raise RuntimeError(f"unexpected timestamp format in SQLite: {ref['created_at']!r}")
    if ref["name_search"] != ref["name"].lower():
        raise RuntimeError(f"name_search is not the lower-cased name: {ref}")
    # The server folds text for search (migration::search_fold); for the ASCII vocabulary of the
    # bulk rows that is lower-casing, as the reference row shows.
    if ref["name_folded"] != ref["name"].lower():
        raise RuntimeError(f"name_folded is not the lower-cased ASCII name: {ref}")
    if ref["version_type"] != "integer" or ref["version"] != 1:
        raise RuntimeError(f"unexpected version of a new product: {ref}")
    if [r[0] for r in indexed] != [ref["rowid"]]:
        raise RuntimeError("products_fts does not hold the product created through the API")
    return ref


def sqlite_insert_products(db_path, ref, first, last):
    """Bulk-inserts products first..last (inclusive) in one transaction, in the formats of `ref`.
    The triggers of `products_fts` index each row as it is inserted, as they do the API's."""
    as_blob = ref["id_type"] == "blob" and ref["id_length"] == 16
    rng = random.Random(first)
    choices, uniform, randint = rng.choices, rng.uniform, rng.randint
    log_max_price = math.log(2000)

    def rows():
        for i in range(first, last + 1):
            pid = (BULK_ID_BASE | i).to_bytes(16, "big")  # bench_id(i), faster
            name = " ".join(choices(VOCABULARY, k=3)).title()
            description = " ".join(choices(VOCABULARY, k=randint(8, 12))).capitalize() + "."
            created = bulk_created_at(i)
            yield (
                pid if as_blob else str(uuid.UUID(bytes=pid)),
                name,
                name.lower(),
                name.lower(),
                description,
                description.lower(),
                round(100 * math.exp(uniform(0, log_max_price))),
                0 if randint(1, 10) == 1 else randint(1, 500),
                created,
                created,
            )

    started = time.perf_counter()
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        # The indexes on price, stock and name take rows in random order: with SQLite's default
        # 2 MB page cache, a million such inserts spend minutes re-reading index pages.
        conn.execute("PRAGMA cache_size = -1048576")  # 1 GiB, in KiB
        with conn:
            conn.executemany(
                "INSERT INTO products (id, name, name_search, name_folded, description, "
                "description_folded, price_cents, stock, created_by, created_at, updated_at, "
                "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 1)",
                rows(),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM products").fetchone()[0]
        indexed = conn.execute(
            "SELECT count(*) FROM products_fts WHERE products_fts MATCH ?",
            (f'"{SEARCH_TERM}"*',)).fetchone()[0]
    finally:
        conn.close()
    log(f"  search index: {indexed} products match {SEARCH_TERM!r}* "
        f"({indexed / count * 100:.2f} %)")
    if not indexed:
        raise RuntimeError("products_fts finds none of the bulk products")
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
    """The same kind of products as on SQLite, made by PostgreSQL (generate_series, random());
    the generated `search_vector` column and its GIN index are filled by PostgreSQL itself."""
    columns = set(psql(url, "SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'products'").split())
    if columns != PRODUCT_COLUMNS | POSTGRES_GENERATED_COLUMNS:
        raise RuntimeError(f"products has columns {sorted(columns)}; the benchmark writes "
                           f"{sorted(PRODUCT_COLUMNS)}: update bench/bench.py")
    words = "ARRAY[" + ",".join(f"'{w}'" for w in VOCABULARY) + "]::text[]"
    word = f"w[1 + floor(random() * {len(VOCABULARY)})::int]"
    name = " || ' ' || ".join([word] * 3)
    description = " || ' ' || ".join([word] * 10)
    started = time.perf_counter()
    psql(
        url,
        "INSERT INTO products (id, name, name_search, name_folded, description, "
        "description_folded, price_cents, stock, created_by, created_at, updated_at, version) "
        "SELECT id, name, lower(name), lower(name), description, lower(description), price, "
        "stock, NULL, at, at, 1 FROM ("
        "SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS id, "
        f"initcap({name}) AS name, initcap({description}) || '.' AS description, "
        "round(100 * exp(random() * ln(2000)))::bigint AS price, "
        "CASE WHEN random() < 0.1 THEN 0 ELSE 1 + floor(random() * 500)::int END AS stock, "
        f"timestamptz 'epoch' + ({BULK_EPOCH_S} + 10 * i) * interval '1 second' "
        "+ (i % 1000000) * interval '1 microsecond' AS at "
        f"FROM generate_series({first}, {last}) AS i, (SELECT {words} AS w) AS v) AS g; "
        "ANALYZE products;",
    )
    took = time.perf_counter() - started
    # Settled before anything is measured: a million rows just inserted leave PostgreSQL
    # writing them out (the checkpoint spreads its writes over minutes) and setting hint bits
    # on first reads, on the same two CPUs as the measured server. The search at 1,000,000
    # products measured 23.1 ms in a run right after the insert, 13-15 ms a minute later.
    settling = time.perf_counter()
    psql(url, "VACUUM (ANALYZE) products")
    try:
        psql(url, "CHECKPOINT")
    except subprocess.CalledProcessError as e:
        log(f"  CHECKPOINT refused ({e.stderr.strip()}); measuring while PostgreSQL may "
            "still be writing out the inserted rows")
    log(f"  settled (VACUUM, CHECKPOINT) in {time.perf_counter() - settling:.1f}s")
    count = int(psql(url, "SELECT count(*) FROM products"))
    indexed = int(psql(url, "SELECT count(*) FROM products WHERE search_vector @@ "
                            f"to_tsquery('storefront_search', '{SEARCH_TERM}:*')"))
    log(f"  search index: {indexed} products match {SEARCH_TERM!r}:* "
        f"({indexed / count * 100:.2f} %)")
    if not indexed:
        raise RuntimeError("search_vector finds none of the bulk products")
    return count, took


class SqliteCatalog:
    """Reads the catalog straight from the SQLite file: what each page shape must answer."""

    def __init__(self, db_path):
        self.db_path = db_path

    def rows(self, where, order, limit, offset=0):
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            found = conn.execute(
                f"SELECT id, price_cents, created_at FROM products WHERE {where} "
                f"ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}").fetchall()
        return [{"id": uuid.UUID(bytes=r[0]) if isinstance(r[0], bytes) else uuid.UUID(r[0]),
                 "price_cents": r[1], "created_ns": rfc3339_nanos(r[2])} for r in found]

    def search_count(self, term):
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM products_fts WHERE products_fts MATCH ?",
                                (f'"{term}"*',)).fetchone()[0]


class PostgresCatalog:
    """The same, from PostgreSQL through psql."""

    def __init__(self, url):
        self.url = url

    def rows(self, where, order, limit, offset=0):
        out = psql(self.url,
                   "SELECT id, price_cents, (extract(epoch FROM created_at) * 1000000)::bigint "
                   f"FROM products WHERE {where} ORDER BY {order} "
                   f"LIMIT {int(limit)} OFFSET {int(offset)}")
        rows = []
        for line in out.splitlines():
            pid, price, micros = line.split("|")
            rows.append({"id": uuid.UUID(pid), "price_cents": int(price),
                         "created_ns": int(micros) * 1000})
        return rows

    def search_count(self, term):
        return int(psql(self.url, "SELECT count(*) FROM products WHERE search_vector @@ "
                                  f"to_tsquery('storefront_search', '{term}:*')"))
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


def user_and_admin(server, env, workdir):
    """Registers USER through `server` and makes ADMIN with `storefront create-admin` on its
    store; returns their access tokens."""
    user_token = register(server.addr, USER)
    subprocess.run(
        [STOREFRONT, "create-admin", "--username", ADMIN],
        env={**env, "ADMIN_PASSWORD": PASSWORD}, cwd=workdir,
        capture_output=True, check=True,
    )
    return user_token, login(server.addr, ADMIN)


def prepare_sqlite_catalog(workdir):
    """A fresh SQLite store with a user, an admin and CATALOG products; returns its state."""
    db_path = os.path.join(workdir, "storefront.db")
    env = storefront_env(sqlite_url(db_path))
    server = Server("storefront-sqlite", [STOREFRONT, "serve"], env, workdir)
    user_token, admin_token = user_and_admin(server, env, workdir)
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


# The page shapes of issue 13, each measured at 1,000 and 1,000,000 products with the catalog
# cache off and on, over one connection (their p50 is the figure): name, what the table calls it.
SHAPES = (
    ("sorted", "sorted first page, PRICE DESC"),
    ("filtered", f"filtered first page, priceMin {FILTER_PRICE_MIN} + inStock"),
    ("deep", "deep page at 90 %, default order"),
    ("deep_price", "deep page at 90 %, PRICE DESC"),
    ("search", "search, RELEVANCE"),
)
PAGE_SHAPES = ("sorted", "filtered", "deep", "deep_price")
PRICE_DESC = [{"field": "PRICE", "direction": "DESC"}]
# Per shape: the list's orderBy and filter, and the same order in SQL for the checks.
SHAPE_LISTS = {
    "sorted": (PRICE_DESC, None, "1 = 1", "price_cents DESC, id DESC"),
    "filtered": (None, {"priceMin": FILTER_PRICE_MIN, "inStock": True},
                 f"price_cents >= {round(float(FILTER_PRICE_MIN) * 100)} AND stock > 0",
                 "created_at, id"),
    "deep": (None, None, "1 = 1", "created_at, id"),
    "deep_price": (PRICE_DESC, None, "1 = 1", "price_cents DESC, id DESC"),
    "search": ([{"field": "RELEVANCE", "direction": "DESC"}], {"search": SEARCH_TERM}, None,
               None),
}


def list_variables(order_by, filter_, after=None):
    variables = {}
    if order_by:
        variables["orderBy"] = order_by
    if filter_:
        variables["filter"] = filter_
    if after:
        variables["after"] = after
    return variables


def shape_request(shape, server, token, catalog, count):
    """The variables of `shape`'s request, after checking the server's answer to it against the
    catalog read straight from the database: the exact ids of the page (in order), or for the
    search, that every product found holds a word starting with the term and as many are found
    as the full-text index holds (up to a page)."""
    order_by, filter_, where, order = SHAPE_LISTS[shape]
    after = None
    offset = 0
    if shape in ("deep", "deep_price"):
        # A cursor at 90 % of the list, in the server's format for this order (keys: the
        # creation time in ns, or the price in cents, then the id).
        offset = int(count * 0.9)
        (at,) = catalog.rows(where, order, 1, offset - 1)
        first = graphql(server.addr, LIST_QUERY, list_variables(order_by, filter_), token)
        fingerprint = cursor_fingerprint(first["products"]["edges"][0]["cursor"])
        key = at["price_cents"] if shape == "deep_price" else at["created_ns"]
        after = keyset_cursor(fingerprint, [key], at["id"])
    variables = list_variables(order_by, filter_, after)
    data = graphql(server.addr, LIST_CHECK_QUERY, variables, token)["products"]
    got = [edge["node"] for edge in data["edges"]]
    if shape == "search":
        matches = catalog.search_count(SEARCH_TERM)
        word = re.compile(r"\b" + re.escape(SEARCH_TERM), re.IGNORECASE)
        stray = [n["id"] for n in got if not word.search(n["name"] + " " + n["description"])]
        if not got or stray or len(got) != min(20, matches) or data["totalCount"] != matches:
            raise RuntimeError(
                f"search {SEARCH_TERM!r}: {len(got)} products (totalCount "
                f"{data['totalCount']}), {matches} in the index, not matching: {stray[:3]}")
        return variables, {"matches": matches, "match_share": matches / count}
    expected = [str(r["id"]) for r in catalog.rows(where, order, 20, offset)]
    if [n["id"] for n in got] != expected or len(expected) != 20:
        raise RuntimeError(f"{shape}: the page is {[n['id'] for n in got][:3]}..., the "
                           f"database's is {expected[:3]}... ({len(expected)} rows)")
    extra = {"total_count": data["totalCount"]}
    if after:
        extra["position"] = offset
    return variables, extra


def page_shapes(label, server, token, catalog, count, cache):
    """Every shape of SHAPES on one server: p50 over one connection, SHAPE_ROUNDS rounds of
    SHAPE_SECONDS after SHAPE_WARMUP seconds."""
    results = {}
    for shape, title in SHAPES:
        variables, extra = shape_request(shape, server, token, catalog, count)
        result = throughput(f"{title}, {count} products, {label}, cache {cache}", server,
                            {"query": LIST_QUERY, "variables": variables}, token,
                            connections=1, rounds=SHAPE_ROUNDS, seconds=SHAPE_SECONDS,
                            warmup=SHAPE_WARMUP)
        result.update(extra, catalog=count, cache=cache)
        results[shape] = result
    return results


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
    catalog = SqliteCatalog(state["db_path"])
    shapes = results["shapes_sqlite"] = {"small": {}, "big": {}}
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
        shapes["small"]["on"] = page_shapes("SQLite", server, token, catalog, state["count"],
                                            "on")
    finally:
        server.stop()

    # With the catalog cache off, every page is read from the database: the database path on
    # its own, and the page shapes, which must measure the indexes rather than the cache.
    uncached_env = {**state["env"], "CATALOG_CACHE_MB": "0"}
    server = Server("storefront-sqlite-uncached", [STOREFRONT, "serve"], uncached_env, workdir)
    try:
        results["products_sqlite_uncached"] = throughput(
            "products (SQLite, catalog cache off)", server, {"query": PRODUCTS_QUERY}, token)
        shapes["small"]["off"] = page_shapes("SQLite", server, token, catalog, state["count"],
                                             "off")
    finally:
        server.stop()
    # The deep page of the earlier runs: the default order's deep page with the cache off.
    results["deep_page_small"] = shapes["small"]["off"]["deep"]

    if BIG_CATALOG <= CATALOG:
        return
    log(f"catalog growth: inserting up to {BIG_CATALOG} products with the server stopped")
    count, took = sqlite_insert_products(state["db_path"], state["ref"], CATALOG, BIG_CATALOG - 1)
    log(f"  catalog: {count} products ({took:.1f}s to insert), "
        f"file {os.path.getsize(state['db_path']) / 2**20:.0f} MiB")
    shapes["big_insert_s"] = took
    server = Server("storefront-sqlite-big", [STOREFRONT, "serve"], uncached_env, workdir)
    try:
        results["startup_big_catalog_ms"] = server.startup_s * 1e3
        shapes["big"]["off"] = page_shapes("SQLite", server, token, catalog, count, "off")
    finally:
        server.stop()
    results["deep_page_big"] = dict(shapes["big"]["off"]["deep"], insert_s=took)
    server = Server("storefront-sqlite-big-cached", [STOREFRONT, "serve"], state["env"],
                    workdir)
    try:
        shapes["big"]["on"] = page_shapes("SQLite", server, token, catalog, count, "on")
    finally:
        server.stop()


def scenario_postgres(workdir, results):
    name = f"storefront_bench_{os.getpid()}_{secrets.token_hex(3)}"
    psql(POSTGRES_URL, f"CREATE DATABASE {name}")
    url = with_database(POSTGRES_URL, name)
    catalog = PostgresCatalog(url)
    shapes = results["shapes_postgres"] = {"small": {}, "big": {}}
    server = None
    try:
        env = storefront_env(url)
        uncached_env = {**env, "CATALOG_CACHE_MB": "0"}
        server = Server("storefront-postgres", [STOREFRONT, "serve"], env, workdir)
        startup_ms = server.startup_s * 1e3
        token = register(server.addr, USER)
        count, took = postgres_insert_products(url, 1, CATALOG)
        log(f"PostgreSQL catalog: {count} products ({took:.1f}s to insert)")
        check_page(server.addr, token, PRODUCTS_QUERY, None)
        result = throughput("products (PostgreSQL)", server, {"query": PRODUCTS_QUERY}, token)
        result.update(catalog=count, startup_ms=startup_ms)
        results["products_postgres"] = result
        result["password_flood"] = scenario_password_change_flood(server, "PostgreSQL")
        shapes["small"]["on"] = page_shapes("PostgreSQL", server, token, catalog, count, "on")
        server.stop()
        server = Server("storefront-postgres-uncached", [STOREFRONT, "serve"], uncached_env,
                        workdir)
        result["uncached"] = throughput("products (PostgreSQL, catalog cache off)", server,
                                        {"query": PRODUCTS_QUERY}, token)
        shapes["small"]["off"] = page_shapes("PostgreSQL", server, token, catalog, count, "off")
        server.stop()
        server = None
        if not POSTGRES_BIG or BIG_CATALOG <= CATALOG:
            return
        log(f"PostgreSQL catalog growth: inserting up to {BIG_CATALOG} products")
        count, took = postgres_insert_products(url, CATALOG + 1, BIG_CATALOG)
        log(f"  catalog: {count} products ({took:.1f}s to insert, with ANALYZE)")
        shapes["big_insert_s"] = took
        for cache, server_env in (("off", uncached_env), ("on", env)):
            server = Server(f"storefront-postgres-big-{cache}", [STOREFRONT, "serve"],
                            server_env, workdir)
            shapes["big"][cache] = page_shapes("PostgreSQL", server, token, catalog, count,
                                               cache)
            server.stop()
            server = None
    finally:
        if server:
            server.stop()
        try:
            psql(POSTGRES_URL, f"DROP DATABASE IF EXISTS {name}")
        except subprocess.CalledProcessError as e:
            log(f"could not drop database {name}: {e.stderr.strip()}")


FANOUT_PRODUCT_MUTATION = (
    'mutation { createProduct(input: {name: "Fan-out product", description: "Changed by the '
    'fan-out scenario", price: "10.00", stock: 1000}) { id } }'
)


def fanout_env(env, subscribers):
    """The server settings a fan-out to `subscribers` sockets from one address and one account
    needs; the server's defaults stay as they are otherwise."""
    return {
        **env,
        "MAX_CONNECTIONS": str(subscribers + 1000),
        "WS_MAX_CONNECTIONS_PER_ADDRESS": str(subscribers + 100),
        "WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT": str(subscribers + 100),
    }


def fanout_run(label, env, workdir, subscribers):
    """One fan-out on a fresh store: set up a user, an admin and a product, restart the server
    (so the set-up's argon2 memory is not in its RSS), then run the fan-out client against it."""
    env = fanout_env(env, subscribers)
    server = Server(f"fanout-{subscribers}", [STOREFRONT, "serve"], env, workdir)
    try:
        user_token, admin_token = user_and_admin(server, env, workdir)
        product = graphql(server.addr, FANOUT_PRODUCT_MUTATION, token=admin_token)
        product_id = product["createProduct"]["id"]
    finally:
        server.stop()
    server = Server(f"fanout-{subscribers}", [STOREFRONT, "serve"], env, workdir)
    try:
        load = loadavg()
        log(f"fan-out ({label}): {subscribers} subscribers, {FANOUT_CHANGES} changes "
            f"(load average {load:.2f})")
        argv = [FANOUT_CLIENT, "--addr", server.addr, "--token", user_token,
                "--admin-token", admin_token, "--product", product_id,
                "--subscribers", str(subscribers), "--changes", str(FANOUT_CHANGES),
                "--gap-ms", str(FANOUT_GAP_MS), "--subscription", FANOUT_SUBSCRIPTION,
                "--server-pid", str(server.pid)]
        proc = subprocess.Popen(pinned(CLIENT_CPUS, argv), stdout=subprocess.PIPE, text=True)
        CHILDREN.append(proc)
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"fan-out to {subscribers} subscribers ({label}) failed "
                               f"(exit {proc.returncode}); see the fanout messages above and "
                               f"{server.log_path}")
        result = json.loads(out)
        rss, hwm = memory_kib(server.pid)
        result.update(database=label, loadavg_start=load, server_rss_end_kib=rss,
                      server_peak_rss_kib=hwm)
    finally:
        server.stop()
    last, every = result["last_receipt_ms"], result["all_receipts_ms"]
    log(f"  last receipt per change p50 {last['p50']:.1f} ms, p99 {last['p99']:.1f} ms; every "
        f"receipt p50 {every['p50']:.1f} ms, p99 {every['p99']:.1f} ms; "
        f"{result['server_cpu_us_per_receipt']:.1f} us of server CPU per event delivered; "
        f"RSS {result['server_rss_per_subscription_kib']:.1f} KiB per idle subscription")
    return result


def scenario_fanout(workdir, results):
    """Scenario 7 on SQLite, and on PostgreSQL (LISTEN/NOTIFY) with BENCH_POSTGRES_URL."""
    runs = results["fanout"] = []
    for subscribers in FANOUT:
        run_dir = tempfile.mkdtemp(prefix=f"fanout{subscribers}-", dir=workdir)
        env = storefront_env(sqlite_url(os.path.join(run_dir, "storefront.db")))
        runs.append(fanout_run("SQLite", env, run_dir, subscribers))
    if not POSTGRES_URL or not shutil.which("psql"):
        return
    for subscribers in FANOUT:
        name = f"storefront_bench_{os.getpid()}_{secrets.token_hex(3)}"
        psql(POSTGRES_URL, f"CREATE DATABASE {name}")
        try:
            env = storefront_env(with_database(POSTGRES_URL, name))
            runs.append(fanout_run("PostgreSQL", env, workdir, subscribers))
        finally:
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
                 ratio(uncached.get("rps_median"), base.get("rps_median")), ">=", 0.10, ""))
    if "products_postgres" in results:
        pg = results["products_postgres"]
        rows.append(("products/baseline req/s (PostgreSQL)",
                     ratio(pg.get("rps_median"), base.get("rps_median")), ">=", 0.15, ""))
        rows.append(("products/baseline req/s (PostgreSQL, catalog cache off)",
                     ratio(pg.get("uncached", {}).get("rps_median"), base.get("rps_median")),
                     ">=", 0.10, ""))
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
        # The targets are in MB (10^6 bytes); RSS is measured in MiB.
        ("idle RSS", mib_to_mb(startup.get("idle_rss_mib_median")), "<=", 30.0, " MB"),
        ("peak RSS during products", mib_to_mb(sqlite_products.get("peak_rss_mib")), "<=", 100.0,
         " MB"),
        ("start-up", startup.get("startup_ms_median") and startup["startup_ms_median"] / 1e3,
         "<=", 1.0, " s"),
    ]
    rows += shape_verdicts(results)
    for run in results.get("fanout") or []:
        what = f"{run['subscribers']} subscribers ({run['database']})"
        rows += [
            (f"fan-out to {what}: time to the last receipt, p99",
             run["last_receipt_ms"]["p99"], "info", None, " ms"),
            (f"fan-out to {what}: server RSS per idle subscription",
             run["server_rss_per_subscription_kib"], "info", None, " KiB"),
        ]
    if ONLY:
        rows = [row for row in rows if row[1] is not None]
    out = []
    for name, value, op, target, unit in rows:
        if value is None or op == "info":
            ok = None
        else:
            ok = value >= target if op == ">=" else value <= target
        out.append({"name": name, "value": value, "op": op, "target": target, "unit": unit,
                    "pass": ok})
    return out


def shape_pairs(results):
    """(database, cache, shape, title, result at the small catalog, at the big one) for every
    page shape measured."""
    for db, key in (("SQLite", "shapes_sqlite"), ("PostgreSQL", "shapes_postgres")):
        shapes = results.get(key)
        if not shapes:
            continue
        for cache in ("off", "on"):
            small = shapes.get("small", {}).get(cache) or {}
            big = shapes.get("big", {}).get(cache) or {}
            for shape, title in SHAPES:
                if shape in small or shape in big:
                    yield db, cache, shape, title, small.get(shape), big.get(shape)


def shape_verdicts(results):
    """Issue 13: p50 at the big catalog within 1.5 x the small one's for each page shape, and a
    search at the big catalog within SEARCH_MAX_MS."""
    rows = []
    for db, cache, shape, title, small, big in shape_pairs(results):
        p50_small = small and small["p50_ms_median"]
        p50_big = big and big["p50_ms_median"]
        sizes = f"{big['catalog'] if big else BIG_CATALOG} / {small['catalog'] if small else CATALOG}"
        name = f"{title}: p50 {sizes} products ({db}, cache {cache})"
        if shape in PAGE_SHAPES:
            rows.append((name, ratio(p50_big, p50_small), "<=", 1.5, ""))
        else:
            rows.append((name, ratio(p50_big, p50_small), "info", None, ""))
            rows.append((f"{title}: p50 at {big['catalog'] if big else BIG_CATALOG} products "
                         f"({db}, cache {cache})", p50_big, "<=", SEARCH_MAX_MS, " ms"))
    return rows


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
    if not ONLY:
        lines += ["", "| scenario | req/s | p50 ms | p99 ms | server CPU us/req "
                  "| server CPU busy | peak RSS MiB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table = [
        ("baseline (bare axum, -c %d)" % CONNECTIONS, results.get("baseline")),
        ("GraphQL floor, `{ __typename }` (-c %d)" % CONNECTIONS, results.get("graphql_floor")),
        ("products, SQLite (-c %d)" % CONNECTIONS, results.get("products_sqlite")),
        ("products, SQLite, catalog cache off (-c %d)" % CONNECTIONS,
         results.get("products_sqlite_uncached")),
        ("products, PostgreSQL (-c %d)" % CONNECTIONS, results.get("products_postgres")),
        ("products, PostgreSQL, catalog cache off (-c %d)" % CONNECTIONS,
         (results.get("products_postgres") or {}).get("uncached")),
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
    pairs = list(shape_pairs(results))
    if pairs:
        lines += ["", f"Page shapes (-c 1, {SHAPE_ROUNDS} x {SHAPE_SECONDS} s after "
                  f"{SHAPE_WARMUP} s warm-up; search: {SEARCH_TERM!r}, a prefix of "
                  f"{SEARCH_WORD!r}):", "",
                  "| shape | database | cache | p50 ms small | p50 ms big | big / small "
                  "| p99 ms small / big | server CPU us/req small / big "
                  "| server CPU busy small / big |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

        def both(small, big, key, digits, scale=1, suffix=""):
            def one(r):
                value = r and r.get(key)
                return "-" if value is None else f"{value * scale:.{digits}f}{suffix}"
            return f"{one(small)} / {one(big)}"

        for db, cache, shape, title, small, big in pairs:
            p50_small = small and small["p50_ms_median"]
            p50_big = big and big["p50_ms_median"]
            label = title
            if shape == "search":
                counts = [f"{r['matches']} of {r['catalog']}" for r in (small, big) if r]
                label += f" ({', '.join(counts)} match)"
            lines.append(
                f"| {label} | {db} | {cache} | {fmt(p50_small)} | {fmt(p50_big)} "
                f"| {fmt(ratio(p50_big, p50_small))} | {both(small, big, 'p99_ms_median', 2)} "
                f"| {both(small, big, 'cpu_us_per_request', 0)} "
                f"| {both(small, big, 'server_cpu_util_median', 0, 100, '%')} |")
        for key, db in (("shapes_sqlite", "SQLite"), ("shapes_postgres", "PostgreSQL")):
            took = (results.get(key) or {}).get("big_insert_s")
            if took:
                lines.append(f"\nBulk insert up to the big catalog ({db}): {took:.0f} s.")
    fanout = results.get("fanout")
    if fanout:
        lines += ["", f"Subscription fan-out (`{FANOUT_SUBSCRIPTION}` of one product; "
                  f"{FANOUT_CHANGES} `adjustStock` changes, each sent {FANOUT_GAP_MS} ms after "
                  f"the previous one reached every subscriber; times from the mutation's "
                  f"answer, in ms):", "",
                  "| database | subscribers | last receipt p50 / p99 / max | last receipt from "
                  "the sending p50 / p99 | every receipt p50 / "
                  "p99 | receipts before the answer | server CPU us/event | RSS KiB per idle "
                  "subscription | connect + prime s | load average |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for run in fanout:
            last, every = run["last_receipt_ms"], run["all_receipts_ms"]
            sent = run["last_receipt_from_send_ms"]
            lines.append(
                f"| {run['database']} | {run['subscribers']} | {last['p50']:.1f} / "
                f"{last['p99']:.1f} / {last['max']:.1f} | {sent['p50']:.1f} / {sent['p99']:.1f} "
                f"| {every['p50']:.1f} / "
                f"{every['p99']:.1f} | {run['receipts_before_answer']} of {run['receipts']} "
                f"| {fmt(run['server_cpu_us_per_receipt'], 1)} "
                f"| {fmt(run['server_rss_per_subscription_kib'], 1)} | {run['connect_s']:.1f} "
                f"| {run['loadavg_start']:.2f} |")
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
    if ONLY not in ("", "fanout"):
        sys.exit(f"bench: BENCH_ONLY={ONLY!r}: only 'fanout' is known")
    if ONLY == "fanout" and not FANOUT:
        sys.exit("bench: BENCH_ONLY=fanout with BENCH_FANOUT=0 runs nothing")
    needed = [STOREFRONT] + ([FANOUT_CLIENT] if FANOUT else [])
    if not ONLY:
        needed += [BASELINE, ARGON2_TIME, OHA]
    for path in needed:
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is missing; run bench/run.sh, which builds and installs it")
    if CATALOG < 100:
        sys.exit("bench: BENCH_CATALOG must be at least 100 (a deep page starts at 90 %)")
    workdir = tempfile.mkdtemp(prefix="storefront-bench-")
    oha_version = "" if ONLY else subprocess.run([OHA, "--version"], capture_output=True,
                                                 text=True).stdout
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
        if not ONLY:
            results["startup"] = measure_startup(workdir)
            results["baseline"] = scenario_baseline(workdir)
            scenario_sqlite(workdir, results)
        if POSTGRES_URL and not shutil.which("psql"):
            log("BENCH_POSTGRES_URL is set but psql is missing: PostgreSQL skipped")
        elif POSTGRES_URL and not ONLY:
            scenario_postgres(workdir, results)
        if FANOUT:
            scenario_fanout(workdir, results)
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
