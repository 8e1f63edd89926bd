// graphql-request against the real server, as a small frontend uses it: a GraphQLClient whose
// headers carry `Authorization: Bearer <accessToken>`, and a request wrapper that trades the
// refresh token for a new pair on UNAUTHENTICATED and retries once.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientError, GraphQLClient } from 'graphql-request';

import { admin, storefrontUrl, uniqueUsername, USER_PASSWORD } from './lib/env.mjs';
import {
  ACCOUNT,
  CREATE_PRODUCT,
  DEMO_PRODUCT_NAMES,
  LOGIN,
  PRODUCTS,
  REFRESH_TOKEN,
  REGISTER,
  codesOf,
  tamperedCopy,
} from './lib/documents.mjs';

/** One client's token store, a GraphQLClient that sends its access token, and a refresh-once wrapper. */
function createSession() {
  const url = `${storefrontUrl()}/graphql`;
  const tokens = { access: null, refresh: null };
  const stats = { refreshes: 0 };
  let refreshing = null;

  // Sign-in and refresh go without a token.
  const anonymous = new GraphQLClient(url);
  const client = new GraphQLClient(url, {
    headers: () => (tokens.access ? { authorization: `Bearer ${tokens.access}` } : {}),
  });

  function signedIn(payload) {
    assert.equal(payload.tokenType, 'Bearer');
    assert.ok(payload.expiresIn > 0 && payload.refreshTokenExpiresIn > 0, JSON.stringify(payload));
    tokens.access = payload.accessToken;
    tokens.refresh = payload.refreshToken;
    return payload;
  }

  function refresh() {
    refreshing ??= anonymous
      .request(REFRESH_TOKEN, { refreshToken: tokens.refresh })
      .then((data) => {
        stats.refreshes += 1;
        signedIn(data.refreshToken);
      })
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  async function request(document, variables = {}) {
    try {
      return await client.request(document, variables);
    } catch (error) {
      const unauthenticated =
        error instanceof ClientError && codesOf(error.response.errors).includes('UNAUTHENTICATED');
      if (!unauthenticated || !tokens.refresh) throw error;
      await refresh();
      return client.request(document, variables);
    }
  }

  return {
    tokens,
    stats,
    anonymous,
    request,
    async register(username, password, email) {
      const data = await anonymous.request(REGISTER, { input: { username, password, email } });
      return signedIn(data.register);
    },
    async login(username, password) {
      const data = await anonymous.request(LOGIN, { input: { username, password } });
      return signedIn(data.login);
    },
    /** Every product matching `search`, `first` at a time, following `endCursor`. */
    async allProducts({ first, search }) {
      const pages = [];
      let after = null;
      for (let guard = 0; guard < 1000; guard += 1) {
        const { products } = await request(PRODUCTS, { first, after, search });
        pages.push(products);
        assert.ok(products.edges.length <= first, `a page holds at most ${first}`);
        if (!products.pageInfo.hasNextPage) return pages;
        assert.ok(products.pageInfo.endCursor, 'a page with a next page has an endCursor');
        after = products.pageInfo.endCursor;
      }
      throw new Error('pagination did not end');
    },
  };
}

/** The GraphQL errors a rejected request carries, with their codes. */
async function graphQLErrorOf(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ClientError, `expected a ClientError, got ${error}`);
    const errors = error.response.errors ?? [];
    return { status: error.response.status, codes: codesOf(errors), first: errors[0] };
  }
  assert.fail('expected the request to fail');
}

describe('graphql-request', () => {
  const tag = uniqueUsername('gqlreq');
  const adminSession = createSession();
  const userSession = createSession();
  const username = uniqueUsername('gqlreq_user');
  const created = [];

  before(async () => {
    const { username: adminName, password } = admin();
    const signedIn = await adminSession.login(adminName, password);
    assert.equal(signedIn.account.role, 'admin');
    for (let i = 1; i <= 5; i += 1) {
      const { createProduct } = await adminSession.request(CREATE_PRODUCT, {
        input: { name: `${tag} item ${i}`, description: 'made by graphql-request.test.mjs', price: `${i}.25`, stock: i },
      });
      assert.equal(createProduct.price, `${i}.25`);
      created.push(createProduct);
    }
  });

  test('register signs a new USER in', async () => {
    const payload = await userSession.register(username, USER_PASSWORD, `${username}@example.test`);
    assert.equal(payload.account.username, username);
    assert.equal(payload.account.role, 'user');
    const { account } = await userSession.request(ACCOUNT);
    assert.equal(account.username, username);
  });

  test('login returns a Bearer token pair that the client sends', async () => {
    const payload = await userSession.login(username, USER_PASSWORD);
    assert.equal(payload.account.role, 'user');
    const { account } = await userSession.request(ACCOUNT);
    assert.deepEqual(account, payload.account);
  });

  test('pagination follows endCursor until hasNextPage is false', async () => {
    const pages = await userSession.allProducts({ first: 2, search: tag });
    assert.equal(pages.length, 3, 'five products two at a time make three pages');
    const names = pages.flatMap((p) => p.edges.map((e) => e.node.name));
    assert.deepEqual(names, created.map((p) => p.name), 'every product once, in creation order');
    for (const page of pages) assert.equal(page.totalCount, 5);
    const cursors = pages.flatMap((p) => p.edges.map((e) => e.cursor));
    assert.equal(new Set(cursors).size, cursors.length, 'cursors are distinct');

    const all = await userSession.allProducts({ first: 3 });
    const allNames = all.flatMap((p) => p.edges.map((e) => e.node.name));
    assert.equal(allNames.length, all[0].totalCount, 'every product seen, as totalCount says');
    assert.equal(new Set(all.flatMap((p) => p.edges.map((e) => e.node.id))).size, allNames.length);
    for (const name of [...DEMO_PRODUCT_NAMES, ...created.map((p) => p.name)]) {
      assert.ok(allNames.includes(name), `${name} is listed`);
    }
  });

  test('UNAUTHENTICATED without a token and with a garbage token', async () => {
    const anonymous = createSession();
    const none = await graphQLErrorOf(anonymous.request(PRODUCTS, { first: 1 }));
    assert.deepEqual(none.codes, ['UNAUTHENTICATED']);

    anonymous.tokens.access = 'not-a-jwt';
    const garbage = await graphQLErrorOf(anonymous.request(PRODUCTS, { first: 1 }));
    assert.deepEqual(garbage.codes, ['UNAUTHENTICATED']);
    assert.equal(anonymous.stats.refreshes, 0, 'no refresh without a refresh token');

    // The same through a plain GraphQLClient built with a static header.
    const plain = new GraphQLClient(`${storefrontUrl()}/graphql`, {
      headers: { authorization: 'Bearer garbage.garbage.garbage' },
    });
    const forged = await graphQLErrorOf(plain.request(PRODUCTS, { first: 1 }));
    assert.deepEqual(forged.codes, ['UNAUTHENTICATED']);
  });

  test('FORBIDDEN when a USER creates a product', async () => {
    const forbidden = await graphQLErrorOf(
      userSession.request(CREATE_PRODUCT, { input: { name: `${tag} nope`, description: '', price: '1.00', stock: 1 } }),
    );
    assert.deepEqual(forbidden.codes, ['FORBIDDEN']);
    assert.equal(forbidden.first.extensions.object, 'product');
    assert.equal(forbidden.first.extensions.action, 'create');
    assert.equal(userSession.stats.refreshes, 0, 'FORBIDDEN does not trigger a refresh');
  });

  test('a rejected access token is refreshed and the request retried', async () => {
    const oldRefresh = userSession.tokens.refresh;
    const goodAccess = userSession.tokens.access;
    userSession.tokens.access = tamperedCopy(goodAccess);

    const { account } = await userSession.request(ACCOUNT);
    assert.equal(account.username, username, 'the retried request succeeds');
    assert.equal(userSession.stats.refreshes, 1, 'exactly one refresh');
    assert.notEqual(userSession.tokens.refresh, oldRefresh, 'a new refresh token');
    assert.notEqual(userSession.tokens.access, goodAccess, 'a new access token');

    // The old refresh token is spent: presenting it again fails, and ends the session.
    const spent = await graphQLErrorOf(
      userSession.anonymous.request(REFRESH_TOKEN, { refreshToken: oldRefresh }),
    );
    assert.deepEqual(spent.codes, ['UNAUTHENTICATED']);

    // Reuse of a spent token ended the session: the new pair stops working too, and the
    // wrapper's refresh attempt fails, so the error reaches the caller.
    const ended = await graphQLErrorOf(userSession.request(ACCOUNT));
    assert.deepEqual(ended.codes, ['UNAUTHENTICATED']);
  });
});
