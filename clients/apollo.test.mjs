// Apollo Client (core, no React) against the real server, wired as a frontend wires it:
// an auth link that adds `Authorization: Bearer <accessToken>`, an error link that trades the
// refresh token for a new pair on UNAUTHENTICATED and retries once, and automatic persisted
// queries (lib/apq.mjs: hashes first, queries as GETs), over an HttpLink with a fetch that
// records what is sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  gql,
} from '@apollo/client/core';
import { ErrorLink } from '@apollo/client/link/error';
import { from, switchMap } from 'rxjs';

import { apolloPersistedQueries } from './lib/apq.mjs';
import { admin, storefrontUrl, uniqueUsername, USER_PASSWORD } from './lib/env.mjs';
import * as docs from './lib/documents.mjs';
import { recordingFetch, shapeOf } from './lib/server.mjs';

const REGISTER = gql(docs.REGISTER);
const LOGIN = gql(docs.LOGIN);
const REFRESH_TOKEN = gql(docs.REFRESH_TOKEN);
const ACCOUNT = gql(docs.ACCOUNT);
const PRODUCTS = gql(docs.PRODUCTS);
const CREATE_PRODUCT = gql(docs.CREATE_PRODUCT);

/**
 * One browser tab's worth of client: its own token store and Apollo Client.
 * `session.tokens` may be changed by a test to simulate a stale access token.
 */
function createSession() {
  const tokens = { access: null, refresh: null };
  const stats = { refreshes: 0 };
  let refreshing = null;

  const sent = recordingFetch();
  const httpLink = new HttpLink({ uri: `${storefrontUrl()}/graphql`, fetch: sent });

  // Adds the Bearer token, unless the operation asks to go without (sign-in, refresh).
  const authLink = new ApolloLink((operation, forward) => {
    const { skipAuth } = operation.getContext();
    if (!skipAuth && tokens.access) {
      operation.setContext(({ headers = {} }) => ({
        headers: { ...headers, authorization: `Bearer ${tokens.access}` },
      }));
    }
    return forward(operation);
  });

  // On UNAUTHENTICATED, refresh once (shared by concurrent operations) and retry once.
  const refreshLink = new ErrorLink(({ error, operation, forward }) => {
    const context = operation.getContext();
    if (context.skipAuth || context.retried || !tokens.refresh) return;
    if (!CombinedGraphQLErrors.is(error)) return;
    if (!docs.codesOf(error.errors).includes('UNAUTHENTICATED')) return;
    operation.setContext({ retried: true });
    return from(refresh()).pipe(switchMap(() => forward(operation)));
  });

  const client = new ApolloClient({
    link: ApolloLink.from([refreshLink, authLink, apolloPersistedQueries(), httpLink]),
    cache: new InMemoryCache(),
    defaultOptions: {
      query: { fetchPolicy: 'no-cache' },
      mutate: { fetchPolicy: 'no-cache' },
    },
  });

  function signedIn(payload) {
    assert.equal(payload.tokenType, 'Bearer');
    assert.ok(payload.expiresIn > 0 && payload.refreshTokenExpiresIn > 0, JSON.stringify(payload));
    tokens.access = payload.accessToken;
    tokens.refresh = payload.refreshToken;
    return payload;
  }

  function refresh() {
    refreshing ??= client
      .mutate({
        mutation: REFRESH_TOKEN,
        variables: { refreshToken: tokens.refresh },
        context: { skipAuth: true },
      })
      .then(({ data }) => {
        stats.refreshes += 1;
        signedIn(data.refreshToken);
      })
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  return {
    client,
    tokens,
    stats,
    sent,
    async register(username, password, email) {
      const { data } = await client.mutate({
        mutation: REGISTER,
        variables: { input: { username, password, email } },
        context: { skipAuth: true },
      });
      return signedIn(data.register);
    },
    async login(username, password) {
      const { data } = await client.mutate({
        mutation: LOGIN,
        variables: { input: { username, password } },
        context: { skipAuth: true },
      });
      return signedIn(data.login);
    },
    async query(query, variables = {}) {
      const { data } = await client.query({ query, variables });
      return data;
    },
    async mutate(mutation, variables = {}) {
      const { data } = await client.mutate({ mutation, variables });
      return data;
    },
    /** Every product matching `search`, `first` at a time, following `endCursor`. */
    async allProducts({ first, search }) {
      const pages = [];
      let afterCursor = null;
      for (let guard = 0; guard < 1000; guard += 1) {
        const { products } = await this.query(PRODUCTS, { first, after: afterCursor, search });
        pages.push(products);
        assert.ok(products.edges.length <= first, `a page holds at most ${first}`);
        if (!products.pageInfo.hasNextPage) return pages;
        assert.ok(products.pageInfo.endCursor, 'a page with a next page has an endCursor');
        afterCursor = products.pageInfo.endCursor;
      }
      throw new Error('pagination did not end');
    },
  };
}

/** The GraphQL error a rejected Apollo operation carries, with its codes. */
async function graphQLErrorOf(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(CombinedGraphQLErrors.is(error), `expected GraphQL errors, got ${error}`);
    return { error, codes: docs.codesOf(error.errors), first: error.errors[0] };
  }
  assert.fail('expected the operation to fail');
}

describe('Apollo Client', () => {
  const tag = uniqueUsername('apollo');
  const adminSession = createSession();
  const userSession = createSession();
  const username = uniqueUsername('apollo_user');
  const created = [];

  before(async () => {
    const { username: adminName, password } = admin();
    const signedIn = await adminSession.login(adminName, password);
    assert.equal(signedIn.account.role, 'admin');
    for (let i = 1; i <= 5; i += 1) {
      const { createProduct } = await adminSession.mutate(CREATE_PRODUCT, {
        input: { name: `${tag} item ${i}`, description: 'made by apollo.test.mjs', price: `${i}.50`, stock: i },
      });
      assert.equal(createProduct.price, `${i}.50`);
      created.push(createProduct);
    }
  });

  after(() => {
    adminSession.client.stop();
    userSession.client.stop();
  });

  test('register signs a new USER in', async () => {
    const payload = await userSession.register(username, USER_PASSWORD, `${username}@example.test`);
    assert.equal(payload.account.username, username);
    assert.equal(payload.account.role, 'user');
    const { account } = await userSession.query(ACCOUNT);
    assert.equal(account.username, username);
  });

  test('login returns a Bearer token pair that the auth link sends', async () => {
    const payload = await userSession.login(username, USER_PASSWORD);
    assert.equal(payload.account.role, 'user');
    const { account } = await userSession.query(ACCOUNT);
    assert.deepEqual(account, { ...payload.account, __typename: 'Account' });
  });

  test('pagination follows endCursor until hasNextPage is false', async () => {
    const pages = await userSession.allProducts({ first: 2, search: tag });
    assert.equal(pages.length, 3, 'five products two at a time make three pages');
    const names = pages.flatMap((p) => p.edges.map((e) => e.node.name));
    assert.deepEqual(names, created.map((p) => p.name), 'every product once, in creation order');
    for (const page of pages) assert.equal(page.totalCount, 5);
    const cursors = pages.flatMap((p) => p.edges.map((e) => e.cursor));
    assert.equal(new Set(cursors).size, cursors.length, 'cursors are distinct');

    const all = await userSession.allProducts({ first: 2 });
    const allNames = all.flatMap((p) => p.edges.map((e) => e.node.name));
    assert.equal(allNames.length, all[0].totalCount, 'every product seen, as totalCount says');
    assert.equal(new Set(all.flatMap((p) => p.edges.map((e) => e.node.id))).size, allNames.length);
    for (const name of [...docs.DEMO_PRODUCT_NAMES, ...created.map((p) => p.name)]) {
      assert.ok(allNames.includes(name), `${name} is listed`);
    }
  });

  test('UNAUTHENTICATED without a token and with a garbage token', async () => {
    const anonymous = createSession();
    try {
      const none = await graphQLErrorOf(anonymous.query(PRODUCTS, { first: 1 }));
      assert.deepEqual(none.codes, ['UNAUTHENTICATED']);

      anonymous.tokens.access = 'not-a-jwt';
      const garbage = await graphQLErrorOf(anonymous.query(PRODUCTS, { first: 1 }));
      assert.deepEqual(garbage.codes, ['UNAUTHENTICATED']);
      assert.equal(anonymous.stats.refreshes, 0, 'no refresh without a refresh token');
    } finally {
      anonymous.client.stop();
    }
  });

  test('FORBIDDEN when a USER creates a product', async () => {
    const forbidden = await graphQLErrorOf(
      userSession.mutate(CREATE_PRODUCT, { input: { name: `${tag} nope`, description: '', price: '1.00', stock: 1 } }),
    );
    assert.deepEqual(forbidden.codes, ['FORBIDDEN']);
    assert.equal(forbidden.first.extensions.object, 'product');
    assert.equal(forbidden.first.extensions.action, 'create');
    assert.equal(userSession.stats.refreshes, 0, 'FORBIDDEN does not trigger a refresh');
  });

  test('a rejected access token is refreshed and the operation retried', async () => {
    const oldRefresh = userSession.tokens.refresh;
    const goodAccess = userSession.tokens.access;
    userSession.tokens.access = docs.tamperedCopy(goodAccess);

    const { account } = await userSession.query(ACCOUNT);
    assert.equal(account.username, username, 'the retried query succeeds');
    assert.equal(userSession.stats.refreshes, 1, 'exactly one refresh');
    assert.notEqual(userSession.tokens.refresh, oldRefresh, 'a new refresh token');
    assert.notEqual(userSession.tokens.access, goodAccess, 'a new access token');

    // The old refresh token is spent: presenting it again fails, and ends the session.
    const spent = await graphQLErrorOf(
      userSession.client.mutate({
        mutation: REFRESH_TOKEN,
        variables: { refreshToken: oldRefresh },
        context: { skipAuth: true },
      }),
    );
    assert.deepEqual(spent.codes, ['UNAUTHENTICATED']);

    // Reuse of a spent token ended the session: the new pair stops working too, and the
    // client's refresh attempt fails, so the error reaches the caller.
    const ended = await graphQLErrorOf(userSession.query(ACCOUNT));
    assert.deepEqual(ended.codes, ['UNAUTHENTICATED']);
  });

  test('with APQ a known query is one hash-only GET; a new one is sent once with its document', async () => {
    const sent = adminSession.sent;
    // A document no earlier run sent, so the server has never seen its hash.
    const firstUse = gql(`query FirstUse_${tag} { account { id username } }`);
    sent.take();
    const first = await adminSession.query(firstUse);
    assert.deepEqual(
      sent.take().map((r) => [r.method, shapeOf(r), r.status]),
      [
        ['GET', 'hash', 400], // PERSISTED_QUERY_NOT_FOUND (400, as application/graphql-response+json has it)
        ['POST', 'document+hash', 200],
      ],
    );
    const again = await adminSession.query(firstUse);
    assert.deepEqual(again, first);
    const [get] = sent.take();
    assert.equal(get.method, 'GET');
    assert.equal(shapeOf(get), 'hash');
    assert.equal(get.status, 200);
    assert.equal(new URL(get.url).searchParams.get('query'), null, 'no document in the URL');
    assert.equal(get.body.operationName, `FirstUse_${tag}`);

    // Mutations go by hash too, over POST: the admin's sign-in (in `before`) taught the
    // server LOGIN's hash.
    const { username: adminName, password } = admin();
    await adminSession.login(adminName, password);
    assert.deepEqual(sent.take().map((r) => [r.method, shapeOf(r), r.status]), [['POST', 'hash', 200]]);
  });

  test('every operation of these tests went out with its hash', () => {
    for (const session of [adminSession, userSession]) {
      for (const request of session.sent.requests) {
        assert.notEqual(shapeOf(request), 'document', `${request.method} ${request.url} had no hash`);
      }
    }
  });
});
