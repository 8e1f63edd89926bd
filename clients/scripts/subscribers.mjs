#!/usr/bin/env node
// graphql-ws clients that subscribe to every product change and report what happens to them,
// one JSON line each on stdout, until stdin closes. tests/api/nginx.rs runs it through nginx
// and kills a replica under it: the clients on that replica must reconnect by themselves
// (`retryAttempts`), through nginx, to another replica, resubscribe and receive what comes
// next. Wired as docs/clients.md shows, plus a WebSocket that notes which replica nginx chose
// (its `X-Upstream` answer header).
//
//   STOREFRONT_URL=http://127.0.0.1:8080 TOKEN=… COUNT=6 node scripts/subscribers.mjs
//
// Lines: {"client":0,"event":"connected","upstream":"127.0.0.1:40001"}
//        {"client":0,"event":"next","kind":"CREATED","id":"…","name":"…"}
//        {"client":0,"event":"closed","code":1006}
//        {"client":0,"event":"error","message":"…"}   (the subscription gave up)
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const url = `${process.env.STOREFRONT_URL.replace(/\/+$/, '').replace(/^http/, 'ws')}/graphql`;
const token = process.env.TOKEN;
const count = Number(process.env.COUNT ?? '6');
const report = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const clients = [];
for (let client = 0; client < count; client += 1) {
  let upstream = null;
  /** A WebSocket that remembers the replica nginx sent it to. */
  class NotingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('upgrade', (response) => {
        upstream = response.headers['x-upstream'] ?? null;
      });
    }
  }
  const ws = createClient({
    url,
    webSocketImpl: NotingWebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    lazy: false,
    retryAttempts: 10,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
    shouldRetry: () => true,
    on: {
      connected: () => report({ client, event: 'connected', upstream }),
      closed: (event) => report({ client, event: 'closed', code: event?.code ?? null }),
    },
  });
  ws.subscribe(
    { query: 'subscription { productChanged { kind id product { name } } }' },
    {
      next: ({ data }) => {
        const change = data?.productChanged;
        report({ client, event: 'next', kind: change?.kind, id: change?.id, name: change?.product?.name ?? null });
      },
      error: (error) => report({ client, event: 'error', message: String(error?.message ?? error?.code ?? error) }),
      complete: () => report({ client, event: 'complete' }),
    },
  );
  clients.push(ws);
}
process.stdin.resume();
process.stdin.on('end', async () => {
  await Promise.all(clients.map((ws) => ws.dispose()));
  process.exit(0);
});
