// The cache snippets of docs/clients.md (lib/cache/apollo.mjs and lib/cache/urql.mjs, shown
// there as they are) against the real server: a list read a page at a time into Apollo's
// InMemoryCache and urql's Graphcache stays right after createProduct and deleteProduct, read
// back from the cache alone (no request is sent for it) and compared with what the server lists.
// Both clients run with automatic persisted queries on (lib/apq.mjs), as docs/clients.md shows.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApolloClient, ApolloLink, HttpLink } from '@apollo/client/core';
import { Client, fetchExchange } from '@urql/core';

import { apolloPersistedQueries, urqlPersistedQueries } from './lib/apq.mjs';

import * as apollo from './lib/cache/apollo.mjs';
import * as urql from './lib/cache/urql.mjs';
import { run, signInAdmin } from './lib/accounts.mjs';
import { storefrontUrl, uniqueUsername } from './lib/env.mjs';
import { recordingFetch, shapeOf } from './lib/server.mjs';

const SERVER_LIST = `
  query ServerList($filter: ProductFilter) {
    products(first: 100, filter: $filter) { totalCount nodes { id name } }
  }
`;

/** Whether every request `sent` recorded named its document by hash, and some by hash alone. */
function assertPersisted(sent) {
  assert.ok(sent.requests.length > 0);
  for (const request of sent.requests) {
    assert.notEqual(shapeOf(request), 'document', `${request.method} ${request.url} had no hash`);
  }
  const hashOnlyGets = sent.requests.filter((r) => r.method === 'GET' && shapeOf(r) === 'hash');
  assert.ok(hashOnlyGets.length > 0, 'queries the server knew went out as hash-only GETs');
  assert.ok(hashOnlyGets.every((r) => r.status === 200 || r.status === 400));
}

/** Creates `count` products named `${tag} 1`, … in that order, with plain fetch. */
async function seed(token, tag, count) {
  for (let i = 1; i <= count; i += 1) {
    await run(
      'mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }',
      { input: { name: `${tag} ${i}`, description: 'made by caches.test.mjs', price: `${i}.00`, stock: i } },
      token,
    );
  }
}

/** The names the server lists for `filter`, in the default order, and its totalCount. */
async function serverList(token, filter) {
  const { products } = await run(SERVER_LIST, { filter }, token);
  return { names: products.nodes.map((p) => p.name), totalCount: products.totalCount };
}

describe('Apollo Client InMemoryCache (lib/cache/apollo.mjs)', () => {
  const tag = uniqueUsername('apollo_cache');
  const list = { filter: { nameContains: tag } };
  const byPrice = { ...list, orderBy: [{ field: 'PRICE', direction: 'DESC' }] };
  const otherTag = { filter: { nameContains: `${tag} none` } };
  const counted = recordingFetch();
  let token;
  let client;

  const cachedList = (variables = { ...list, first: 2 }) =>
    client.readQuery({ query: apollo.PRODUCT_LIST, variables })?.products ?? null;

  before(async () => {
    ({ token } = await signInAdmin());
    await seed(token, tag, 3);
    client = new ApolloClient({
      link: ApolloLink.from([
        apolloPersistedQueries(),
        new HttpLink({
          uri: `${storefrontUrl()}/graphql`,
          fetch: counted,
          headers: { authorization: `Bearer ${token}` },
        }),
      ]),
      cache: apollo.createCache(),
    });
  });

  test('pages read with first/after make one list in the cache', async () => {
    const first = await client.query({ query: apollo.PRODUCT_LIST, variables: { ...list, first: 2 } });
    assert.equal(first.data.products.pageInfo.hasNextPage, true);
    await client.query({
      query: apollo.PRODUCT_LIST,
      variables: { ...list, first: 2, after: first.data.products.pageInfo.endCursor },
      fetchPolicy: 'network-only', // what fetchMore sends
    });
    await client.query({ query: apollo.PRODUCT_LIST, variables: { ...byPrice, first: 10 } });
    await client.query({ query: apollo.PRODUCT_LIST, variables: { ...otherTag, first: 10 } });

    const cached = cachedList();
    assert.deepEqual(cached.edges.map((e) => e.node.name), [1, 2, 3].map((i) => `${tag} ${i}`));
    assert.equal(cached.pageInfo.hasNextPage, false);
    assert.equal(cached.totalCount, 3);
  });

  test('createProduct adds the product at the end of the cached list', async () => {
    const created = await apollo.createProduct(client, {
      name: `${tag} 4`,
      description: 'created through Apollo',
      price: '4.00',
      stock: 4,
    });
    const requests = counted.requests.length;
    const cached = cachedList();
    assert.deepEqual(
      cached.edges.map((e) => e.node.name),
      [1, 2, 3, 4].map((i) => `${tag} ${i}`),
      'the new product last, as in the default order',
    );
    assert.deepEqual(cached.edges.at(-1).node, { __typename: 'Product', ...created });
    assert.equal(cached.totalCount, 4);
    assert.equal(counted.requests.length, requests, 'read from the cache alone');

    const server = await serverList(token, list.filter);
    assert.deepEqual(cached.edges.map((e) => e.node.name), server.names, 'the cache lists what the server lists');
    assert.equal(cached.totalCount, server.totalCount);

    assert.equal(cachedList({ ...byPrice, first: 10 }), null, 'a list in another order is dropped, to read again');
    assert.deepEqual(cachedList({ ...otherTag, first: 10 }).edges, [], 'a list whose filter leaves it out is kept');
  });

  test('deleteProduct removes the product from the cached list and the cache', async () => {
    const victim = cachedList().edges[1].node;
    await apollo.deleteProduct(client, victim.id, victim.version);
    const requests = counted.requests.length;
    const cached = cachedList();
    assert.deepEqual(cached.edges.map((e) => e.node.name), [1, 3, 4].map((i) => `${tag} ${i}`));
    assert.equal(cached.totalCount, 3);
    assert.equal(counted.requests.length, requests, 'read from the cache alone');
    assert.equal(client.cache.extract()[client.cache.identify(victim)], undefined, 'evicted');

    const server = await serverList(token, list.filter);
    assert.deepEqual(cached.edges.map((e) => e.node.name), server.names);
    assert.equal(cached.totalCount, server.totalCount);
  });

  test('queries went out with their hash, as hash-only GETs once the server knew them', () => {
    assertPersisted(counted);
  });
});

describe('urql Graphcache (lib/cache/urql.mjs)', () => {
  const tag = uniqueUsername('urql_cache');
  const list = { filter: { nameContains: tag } };
  const byPrice = { ...list, orderBy: [{ field: 'PRICE', direction: 'DESC' }] };
  const otherTag = { filter: { nameContains: `${tag} none` } };
  const counted = recordingFetch();
  let token;
  let client;

  /** A list read with `cache-only`: never a request. */
  async function cachedList(variables = { ...list, first: 2 }) {
    const result = await client
      .query(urql.PRODUCT_LIST, variables, { requestPolicy: 'cache-only' })
      .toPromise();
    assert.equal(result.error, undefined);
    return result.data?.products ?? null;
  }

  before(async () => {
    ({ token } = await signInAdmin());
    await seed(token, tag, 3);
    client = new Client({
      url: `${storefrontUrl()}/graphql`,
      exchanges: [urql.createProductCache(), urqlPersistedQueries(), fetchExchange],
      fetch: counted,
      fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    });
  });

  test('pages read with first/after make one list in the cache', async () => {
    const first = await client.query(urql.PRODUCT_LIST, { ...list, first: 2 }).toPromise();
    assert.equal(first.error, undefined);
    assert.equal(first.data.products.pageInfo.hasNextPage, true);
    const next = await client
      .query(urql.PRODUCT_LIST, { ...list, first: 2, after: first.data.products.pageInfo.endCursor })
      .toPromise();
    assert.equal(next.error, undefined);
    await client.query(urql.PRODUCT_LIST, { ...byPrice, first: 10 }).toPromise();
    await client.query(urql.PRODUCT_LIST, { ...otherTag, first: 10 }).toPromise();

    const cached = await cachedList();
    assert.deepEqual(cached.nodes.map((p) => p.name), [1, 2, 3].map((i) => `${tag} ${i}`));
    assert.equal(cached.pageInfo.hasNextPage, false);
  });

  test('createProduct adds the product at the end of the cached list', async () => {
    const result = await client
      .mutation(urql.CREATE_PRODUCT, {
        input: { name: `${tag} 4`, description: 'created through urql', price: '4.00', stock: 4 },
      })
      .toPromise();
    assert.equal(result.error, undefined);
    const requests = counted.requests.length;
    const cached = await cachedList();
    assert.deepEqual(
      cached.nodes.map((p) => p.name),
      [1, 2, 3, 4].map((i) => `${tag} ${i}`),
      'the new product last, as in the default order',
    );
    assert.deepEqual(cached.nodes.at(-1), result.data.createProduct);
    assert.equal(counted.requests.length, requests, 'read from the cache alone');
    const server = await serverList(token, list.filter);
    assert.deepEqual(cached.nodes.map((p) => p.name), server.names, 'the cache lists what the server lists');

    assert.equal(await cachedList({ ...byPrice, first: 10 }), null, 'a list in another order is dropped, to read again');
    assert.deepEqual((await cachedList({ ...otherTag, first: 10 })).nodes, [], 'a list whose filter leaves it out is kept');
  });

  test('deleteProduct removes the product from the cached list and the cache', async () => {
    const victim = (await cachedList()).nodes[1];
    const result = await client
      .mutation(urql.DELETE_PRODUCT, { id: victim.id, expectedVersion: victim.version })
      .toPromise();
    assert.equal(result.error, undefined);
    const requests = counted.requests.length;
    const cached = await cachedList();
    assert.deepEqual(cached.nodes.map((p) => p.name), [1, 3, 4].map((i) => `${tag} ${i}`));
    assert.equal(counted.requests.length, requests, 'read from the cache alone');
    const server = await serverList(token, list.filter);
    assert.deepEqual(cached.nodes.map((p) => p.name), server.names);
  });

  test('queries went out with their hash, as hash-only GETs once the server knew them', () => {
    assertPersisted(counted);
  });
});
