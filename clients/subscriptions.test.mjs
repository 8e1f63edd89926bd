// Subscriptions with the clients frontends use: the graphql-ws client (what Apollo Client's
// GraphQLWsLink and urql's subscriptionExchange take), wired as docs/clients.md shows it, and
// Apollo Client with a split link (subscriptions over the socket, the rest over HTTP). Changes
// are made over HTTP and must arrive over the socket; a role change revokes the subscriber's
// access token, the server closes the socket with 4403, and the client refreshes, reconnects
// and carries on with the same subscription.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client/core';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { run, signInAdmin } from './lib/accounts.mjs';
import * as docs from './lib/documents.mjs';
import { storefrontUrl, uniqueUsername, USER_PASSWORD } from './lib/env.mjs';

const wsUrl = () => `${storefrontUrl().replace(/^http/, 'ws')}/graphql`;

const PRODUCT_CHANGED = `
  subscription ProductChanged {
    productChanged { kind id product { id name price stock version } }
  }
`;
const STOCK_CHANGED = `
  subscription StockChanged($ids: [ID!]!) {
    stockChanged(productIds: $ids) { id stock version updatedAt }
  }
`;
const UPDATE_PRICE = 'mutation($id: ID!, $price: Decimal!) { updateProduct(id: $id, input: { price: $price }) { id } }';
const DELETE = 'mutation($id: ID!) { deleteProduct(id: $id) }';
const ADJUST = 'mutation($id: ID!, $delta: Int!) { adjustStock(id: $id, delta: $delta) { id stock } }';
const SET_ROLE = 'mutation($id: ID!, $role: String!) { setUserRole(userId: $id, role: $role) { id role } }';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a subscription delivers, to be awaited one by one. */
function inbox() {
  const items = [];
  const waiting = [];
  return {
    push(item) {
      const next = waiting.shift();
      if (next) next(item);
      else items.push(item);
    },
    /** The next item; fails after `ms`. */
    next(ms = 10_000) {
      if (items.length) return Promise.resolve(items.shift());
      return new Promise((resolve, reject) => {
        const waiter = (item) => {
          clearTimeout(timer);
          resolve(item);
        };
        // A waiter that gave up takes nothing that arrives later.
        const timer = setTimeout(() => {
          waiting.splice(waiting.indexOf(waiter), 1);
          reject(new Error(`nothing arrived within ${ms} ms`));
        }, ms);
        waiting.push(waiter);
      });
    },
  };
}

async function createProduct(adminToken, name) {
  const { createProduct } = await run(docs.CREATE_PRODUCT, { input: { name, price: '5.00', stock: 3 } }, adminToken);
  return createProduct;
}

/** Creates products until one's event arrives: the server registers a subscription when it reads the `subscribe`, which the client sends without waiting for an answer. */
async function firstEvent(events, adminToken, prefix) {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const product = await createProduct(adminToken, `${prefix} ${attempt}`);
    try {
      let event = await events.next(1_000);
      while (event.productChanged?.id !== product.id) event = await events.next(1_000);
      return { product, event };
    } catch {
      // Created before the subscription was in place: try again.
    }
  }
  throw new Error('no event arrived for any of 20 products');
}

describe('subscriptions with graphql-ws and Apollo Client', () => {
  test('graphql-ws: changes made over HTTP arrive, and a revoked token is refreshed and the subscription carries on', async () => {
    const admin = await signInAdmin();
    const { register } = await run(docs.REGISTER, {
      input: { username: uniqueUsername('ws'), password: USER_PASSWORD },
    });
    const tokens = { access: register.accessToken, refresh: register.refreshToken };
    let refreshes = 0;
    let refreshing = null;
    const closes = [];
    const refreshTokens = async () => {
      const { refreshToken } = await run(docs.REFRESH_TOKEN, { refreshToken: tokens.refresh });
      tokens.access = refreshToken.accessToken;
      tokens.refresh = refreshToken.refreshToken;
      refreshes += 1;
    };

    // As docs/clients.md has it.
    const client = createClient({
      url: wsUrl(),
      webSocketImpl: WebSocket,
      connectionParams: async () => {
        await refreshing;
        return { Authorization: `Bearer ${tokens.access}` };
      },
      on: {
        closed: (event) => {
          closes.push([event?.code, event?.reason]);
          if (event?.code === 4403) refreshing = refreshTokens().catch(() => {});
        },
      },
      retryWait: () => sleep(100),
    });
    const events = inbox();
    const errors = [];
    const dispose = client.subscribe(
      { query: PRODUCT_CHANGED },
      { next: ({ data, errors: e }) => (e ? errors.push(e) : events.push(data)), error: (e) => errors.push(e), complete: () => {} },
    );
    try {
      // Created, updated, deleted: each arrives, with what a list needs.
      const { product, event } = await firstEvent(events, admin.token, 'Socket');
      assert.equal(event.productChanged.kind, 'CREATED');
      assert.deepEqual(event.productChanged.product, { ...product, version: 1 });
      await run(UPDATE_PRICE, { id: product.id, price: '7.25' }, admin.token);
      const updated = (await events.next()).productChanged;
      assert.deepEqual([updated.kind, updated.id, updated.product.price, updated.product.version], ['UPDATED', product.id, '7.25', 2]);
      await run(DELETE, { id: product.id }, admin.token);
      const deleted = (await events.next()).productChanged;
      assert.deepEqual([deleted.kind, deleted.id, deleted.product], ['DELETED', product.id, null]);

      // A role change revokes the subscriber's access tokens and keeps its session: the server
      // closes the socket (4403, "session ended"), the client refreshes, reconnects with the
      // new token and resubscribes, and changes arrive again on the same subscription.
      await run(SET_ROLE, { id: register.account.id, role: 'admin' }, admin.token);
      const again = await firstEvent(events, admin.token, 'After the role change');
      assert.equal(again.event.productChanged.kind, 'CREATED');
      assert.deepEqual(closes[0], [4403, 'session ended']);
      assert.equal(refreshes, 1, 'refreshed once');
      assert.deepEqual(errors, []);
    } finally {
      dispose();
      await client.dispose();
    }
  });

  test('Apollo Client: subscriptions over GraphQLWsLink, the rest over HTTP', async () => {
    const admin = await signInAdmin();
    const product = await createProduct(admin.token, 'Watched by Apollo');
    const sockets = createClient({
      url: wsUrl(),
      webSocketImpl: WebSocket,
      connectionParams: () => ({ Authorization: `Bearer ${admin.token}` }),
    });
    const http = new HttpLink({
      uri: `${storefrontUrl()}/graphql`,
      headers: { authorization: `Bearer ${admin.token}` },
    });
    const link = ApolloLink.split(
      ({ query }) => {
        const definition = getMainDefinition(query);
        return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
      },
      new GraphQLWsLink(sockets),
      http,
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const stock = inbox();
    const subscription = client
      .subscribe({ query: gql(STOCK_CHANGED), variables: { ids: [product.id] } })
      .subscribe({ next: (result) => stock.push(result), error: (e) => stock.push({ error: e }) });
    try {
      // Until the subscription is in place (the client does not wait for the server).
      let seen = null;
      for (let delta = 1; delta <= 20 && !seen; delta += 1) {
        const { data } = await client.mutate({ mutation: gql(ADJUST), variables: { id: product.id, delta: 1 } });
        try {
          let result = await stock.next(1_000);
          while (result.data?.stockChanged?.stock !== data.adjustStock.stock) result = await stock.next(1_000);
          seen = result;
        } catch {
          // Adjusted before the subscription was in place.
        }
      }
      assert.ok(seen, 'a stock change arrived');
      assert.equal(seen.data.stockChanged.id, product.id);
      assert.equal(seen.error, undefined);
      const { data } = await client.mutate({ mutation: gql(ADJUST), variables: { id: product.id, delta: -2 } });
      const next = await stock.next();
      assert.equal(next.data.stockChanged.stock, data.adjustStock.stock);
      assert.ok(next.data.stockChanged.version > seen.data.stockChanged.version);
    } finally {
      subscription.unsubscribe();
      await sockets.dispose();
    }
  });
});
