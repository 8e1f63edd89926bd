// `storefront serve` started by a test itself, for what the shared server cannot show: a
// server restarted under a client (the APQ store is in memory), or one with TRUSTED_DOCUMENTS.
// The Rust harness (tests/api/clients.rs) says how: STOREFRONT_BIN, STOREFRONT_DATABASE_URL,
// STOREFRONT_JWT_SECRET and STOREFRONT_POLICY_DIR; without them these tests are skipped.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

const SETTINGS = {
  STOREFRONT_BIN: 'the storefront binary',
  STOREFRONT_DATABASE_URL: 'its DATABASE_URL',
  STOREFRONT_JWT_SECRET: 'its JWT_SECRET',
  STOREFRONT_POLICY_DIR: 'its POLICY_DIR',
};

/** Why servers of their own cannot be started here, or `false` when they can. */
export function cannotStartServers() {
  const missing = Object.keys(SETTINGS).filter((name) => !process.env[name]);
  return missing.length > 0 && `${missing.join(', ')} not set (cargo test --test api clients sets them)`;
}

/** A port nothing listens on now. */
async function freePort() {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts `storefront serve` on the shared database with `env` on top, and waits until it
 * answers. `restart()` stops it and starts it again on the same address, as a deploy does.
 */
export async function startServer(env = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child = null;
  let log = '';

  async function start() {
    log = '';
    child = spawn(process.env.STOREFRONT_BIN, ['serve'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: process.env.STOREFRONT_DATABASE_URL,
        JWT_SECRET: process.env.STOREFRONT_JWT_SECRET,
        POLICY_DIR: process.env.STOREFRONT_POLICY_DIR,
        LISTEN_ADDR: `127.0.0.1:${port}`,
        AUTH_RATE_LIMIT_PER_MINUTE: '0',
        RUST_LOG: 'warn',
        NO_COLOR: '1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (text) => { log += text; });
    }
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`storefront serve exited (${child.exitCode}):\n${log}`);
      }
      const up = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
      if (up) return;
      if (Date.now() > deadline) throw new Error(`storefront serve did not start:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function stop() {
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  await start();
  return {
    url,
    graphql: `${url}/graphql`,
    log: () => log,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}

/**
 * A fetch that records what it sends: `requests` holds `{ method, url, body }` (the body
 * parsed as JSON; for a GET, the URL's parameters, JSON ones parsed).
 */
export function recordingFetch() {
  const recorded = async (input, init = {}) => {
    const url = new URL(typeof input === 'string' ? input : input.url);
    const method = (init.method ?? 'GET').toUpperCase();
    let body;
    if (method === 'GET') {
      body = {};
      for (const [name, value] of url.searchParams) {
        body[name] = ['variables', 'extensions'].includes(name) ? JSON.parse(value) : value;
      }
    } else {
      body = JSON.parse(init.body);
    }
    const response = await fetch(input, init);
    recorded.requests.push({ method, url: url.href, body, status: response.status });
    return response;
  };
  recorded.requests = [];
  /** The requests sent since the last call. */
  recorded.take = () => recorded.requests.splice(0);
  return recorded;
}

/** What a recorded request sent: `hash` (only the APQ hash), `document` (with or without it). */
export function shapeOf(request) {
  const hash = request.body.extensions?.persistedQuery?.sha256Hash;
  if (request.body.query === undefined) return hash ? 'hash' : 'none';
  return hash ? 'document+hash' : 'document';
}
