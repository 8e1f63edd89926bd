// The catalog as a frontend and an admin screen use it, with graphql-request against the real
// server: sorted and filtered lists checked against the data, paging forward and backward,
// `node`/`nodes`, optimistic concurrency between two admins, and `adjustStock`. Every list is
// narrowed to this run's products (`nameContains` a unique tag): the database may hold others.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientError, GraphQLClient } from 'graphql-request';

import { codesOf } from './lib/documents.mjs';
import { registerUser, secondAdmin, signInAdmin } from './lib/accounts.mjs';
import { storefrontUrl, uniqueUsername } from './lib/env.mjs';
import {
  CART,
  PRODUCT_LIST_PAGE,
  SEARCH_BOX,
  firstPage,
  lastPage,
  nextPage,
  previousPage,
  priceHighToLow,
} from './lib/product-page.mjs';

const PRODUCT = 'id name price stock version createdAt updatedAt';
const CREATE_PRODUCT = `
  mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { ${PRODUCT} } }
`;
const UPDATE_PRODUCT = `
  mutation UpdateProduct($id: ID!, $input: UpdateProductInput!, $expectedVersion: Int) {
    updateProduct(id: $id, input: $input, expectedVersion: $expectedVersion) { ${PRODUCT} }
  }
`;
const DELETE_PRODUCT = `
  mutation DeleteProduct($id: ID!, $expectedVersion: Int) {
    deleteProduct(id: $id, expectedVersion: $expectedVersion)
  }
`;
const ADJUST_STOCK = `
  mutation AdjustStock($id: ID!, $delta: Int!) { adjustStock(id: $id, delta: $delta) { ${PRODUCT} } }
`;
const NODE = `
  query Node($id: ID!) {
    node(id: $id) {
      __typename
      id
      ... on Product { name version }
      ... on Account { username }
    }
  }
`;
const NODES = `
  query Nodes($ids: [ID!]!) {
    nodes(ids: $ids) {
      __typename
      id
      ... on Product { name }
      ... on Account { username }
    }
  }
`;

/** A GraphQLClient that sends `token`. */
function clientWith(token) {
  return new GraphQLClient(`${storefrontUrl()}/graphql`, {
    headers: { authorization: `Bearer ${token}` },
  });
}

/** The GraphQL errors of a request that must fail. */
async function errorsOf(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ClientError, `expected GraphQL errors, got ${error}`);
    return error.response.errors;
  }
  assert.fail('expected the request to fail');
}

const cents = (price) => Math.round(Number(price) * 100);

/** The products in the order `orderBy` gives, as the server orders them: ties by id. */
function sorted(products, orderBy) {
  const key = { NAME: (p) => p.name.toLowerCase(), PRICE: (p) => cents(p.price), STOCK: (p) => p.stock };
  const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const sign = (direction) => (direction === 'DESC' ? -1 : 1);
  return [...products].sort((a, b) => {
    for (const { field, direction } of orderBy) {
      const order = compare(key[field](a), key[field](b)) * sign(direction);
      if (order !== 0) return order;
    }
    return compare(a.id, b.id) * sign(orderBy.at(-1).direction);
  });
}

const names = (products) => products.map((p) => p.name);

describe('catalog with graphql-request', () => {
  const tag = uniqueUsername('catalog');
  const word = `zq${Math.random().toString(36).slice(2, 8).replace(/[0-9]/g, 'x')}`;
  // Names in mixed case, and prices and stocks with ties, so the tie-breaks show.
  const rows = [
    ['Delta', '5.00', 3],
    ['alpha', '12.50', 0],
    ['Charlie', '5.00', 7],
    ['bravo', '30.00', 1],
    ['echo', '12.50', 0],
    ['Foxtrot', '0.99', 12],
    ['golf', '30.00', 5],
  ];
  const mine = { filter: { nameContains: tag } };
  let admin;
  let adminAccount;
  let user;
  let userAccount;
  let products = [];

  /** Every product of `list` read `size` at a time from the first page, checking pageInfo. */
  async function readForward(list, size) {
    const seen = [];
    let page = (await admin.request(PRODUCT_LIST_PAGE, firstPage(list, size))).products;
    assert.equal(page.pageInfo.hasPreviousPage, false, 'the first page has nothing before it');
    for (let n = 1; ; n += 1) {
      seen.push(...page.edges.map((e) => e.node));
      assert.equal(page.pageInfo.startCursor, page.edges[0]?.cursor ?? null);
      assert.equal(page.pageInfo.endCursor, page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) return seen;
      assert.equal(page.edges.length, size, 'only the last page is short');
      assert.ok(n < 50, 'paging never ends');
      page = (await admin.request(PRODUCT_LIST_PAGE, nextPage(list, page.pageInfo, size))).products;
      assert.equal(page.pageInfo.hasPreviousPage, true, `page ${n + 1} follows page ${n}`);
    }
  }

  /** Every product of `list` read `size` at a time from the last page back, in list order. */
  async function readBackward(list, size) {
    let seen = [];
    let page = (await admin.request(PRODUCT_LIST_PAGE, lastPage(list, size))).products;
    assert.equal(page.pageInfo.hasNextPage, false, 'the last page has nothing after it');
    for (let n = 1; ; n += 1) {
      seen = [...page.edges.map((e) => e.node), ...seen];
      if (!page.pageInfo.hasPreviousPage) return seen;
      assert.equal(page.edges.length, size, 'only the first page is short');
      assert.ok(n < 50, 'paging never ends');
      page = (await admin.request(PRODUCT_LIST_PAGE, previousPage(list, page.pageInfo, size))).products;
      assert.equal(page.pageInfo.hasNextPage, true, 'a page read backwards has the one after it');
    }
  }

  before(async () => {
    const signedIn = await signInAdmin();
    admin = clientWith(signedIn.token);
    adminAccount = signedIn.account;
    const registered = await registerUser('catalog_user');
    user = clientWith(registered.token);
    userAccount = registered.account;
    for (const [name, price, stock] of rows) {
      const { createProduct } = await admin.request(CREATE_PRODUCT, {
        input: { name: `${tag} ${name}`, description: `made by catalog.test.mjs (${word})`, price, stock },
      });
      assert.equal(createProduct.version, 1, 'a new product is at version 1');
      products.push(createProduct);
    }
  });

  test('orderBy PRICE DESC, NAME ASC and two keys give the order the data says', async () => {
    const orders = [
      [{ field: 'PRICE', direction: 'DESC' }],
      [{ field: 'NAME', direction: 'ASC' }],
      [{ field: 'NAME', direction: 'DESC' }],
      [{ field: 'STOCK', direction: 'ASC' }, { field: 'PRICE', direction: 'DESC' }],
      [{ field: 'PRICE', direction: 'ASC' }],
    ];
    for (const orderBy of orders) {
      const { products: page } = await admin.request(PRODUCT_LIST_PAGE, { ...mine, orderBy, first: 20 });
      const expected = names(sorted(products, orderBy));
      assert.deepEqual(names(page.edges.map((e) => e.node)), expected, JSON.stringify(orderBy));
      assert.equal(page.totalCount, products.length);
    }
    // Spot checks that do not lean on `sorted`.
    const byName = await admin.request(PRODUCT_LIST_PAGE, { ...mine, orderBy: [{ field: 'NAME' }], first: 3 });
    assert.deepEqual(
      byName.products.edges.map((e) => e.node.name),
      ['alpha', 'bravo', 'Charlie'].map((n) => `${tag} ${n}`),
      'NAME ignores case',
    );
    const byPrice = await admin.request(PRODUCT_LIST_PAGE, {
      ...mine,
      orderBy: [{ field: 'PRICE', direction: 'DESC' }],
      first: 7,
    });
    const prices = byPrice.products.edges.map((e) => e.node.price);
    assert.deepEqual(prices, ['30.00', '30.00', '12.50', '12.50', '5.00', '5.00', '0.99']);
  });

  test('the default order is creation order', async () => {
    const { products: page } = await admin.request(PRODUCT_LIST_PAGE, { ...mine, first: 20 });
    assert.deepEqual(names(page.edges.map((e) => e.node)), names(products));
  });

  test('filters: price range and stock, with totalCount', async () => {
    const list = { ...priceHighToLow, filter: { ...priceHighToLow.filter, nameContains: tag } };
    const { products: page } = await admin.request(PRODUCT_LIST_PAGE, firstPage(list));
    const kept = products.filter((p) => p.stock > 0 && cents(p.price) >= 500 && cents(p.price) <= 5000);
    assert.deepEqual(names(page.edges.map((e) => e.node)), names(sorted(kept, list.orderBy)));
    assert.equal(page.totalCount, kept.length);
    assert.equal(kept.length, 4, 'Delta, Charlie, bravo and golf');

    const outOfStock = await admin.request(PRODUCT_LIST_PAGE, {
      first: 20,
      filter: { nameContains: tag, inStock: false },
    });
    assert.deepEqual(
      names(outOfStock.products.edges.map((e) => e.node)),
      names(products.filter((p) => p.stock === 0)),
    );
  });

  test('paging forward and backward reads the whole list, pageInfo right both ways', async () => {
    for (const orderBy of [
      [{ field: 'PRICE', direction: 'DESC' }],
      [{ field: 'NAME', direction: 'ASC' }],
      undefined,
    ]) {
      const list = { ...mine, orderBy };
      const expected = names(orderBy ? sorted(products, orderBy) : products);
      for (const size of [1, 2, 3, 7]) {
        assert.deepEqual(names(await readForward(list, size)), expected, `forward by ${size}`);
        assert.deepEqual(names(await readBackward(list, size)), expected, `backward by ${size}`);
      }
    }
  });

  test('a page after a cursor read backwards, and before one read forwards', async () => {
    const list = { ...mine, orderBy: [{ field: 'PRICE', direction: 'DESC' }] };
    const expected = names(sorted(products, list.orderBy));
    const end = (await admin.request(PRODUCT_LIST_PAGE, lastPage(list, 3))).products;
    assert.deepEqual(names(end.edges.map((e) => e.node)), expected.slice(4));
    assert.deepEqual(end.pageInfo, { ...end.pageInfo, hasNextPage: false, hasPreviousPage: true });

    // Forward from the first product of the last page: the two after it.
    const after = (await admin.request(PRODUCT_LIST_PAGE, { ...list, first: 5, after: end.pageInfo.startCursor }))
      .products;
    assert.deepEqual(names(after.edges.map((e) => e.node)), expected.slice(5));
    assert.equal(after.pageInfo.hasNextPage, false);
    assert.equal(after.pageInfo.hasPreviousPage, true);

    // Backward from the second product of the first page: only the first.
    const start = (await admin.request(PRODUCT_LIST_PAGE, firstPage(list, 2))).products;
    const beforeSecond = (
      await admin.request(PRODUCT_LIST_PAGE, { ...list, last: 5, before: start.edges[1].cursor })
    ).products;
    assert.deepEqual(names(beforeSecond.edges.map((e) => e.node)), expected.slice(0, 1));
    assert.equal(beforeSecond.pageInfo.hasPreviousPage, false);
    assert.equal(beforeSecond.pageInfo.hasNextPage, true);

    // A cursor of another order is refused.
    const errors = await errorsOf(
      admin.request(PRODUCT_LIST_PAGE, { ...mine, first: 2, after: start.pageInfo.endCursor }),
    );
    assert.deepEqual(codesOf(errors), ['BAD_USER_INPUT']);
    assert.equal(errors[0].extensions.field, 'after');
  });

  test('search box and cart queries', async () => {
    const { products: found } = await user.request(SEARCH_BOX, { text: word.slice(0, 5) });
    assert.deepEqual(
      found.edges.map((e) => e.node.name).sort(),
      names(products).slice(0, 8).sort(),
      'the description word, typed halfway, finds every product of this run',
    );

    const gone = '01900000-0000-7000-8000-00000000dead';
    const ids = [products[3].id, gone, products[0].id, products[3].id];
    const { nodes } = await user.request(CART, { ids });
    assert.deepEqual(
      nodes.map((n) => n?.name ?? null),
      [products[3].name, null, products[0].name, products[3].name],
      'in the cart order, repeats kept, null for an unknown id',
    );
  });

  test("node and nodes resolve products and accounts, not other people's accounts", async () => {
    const { node } = await user.request(NODE, { id: products[2].id });
    assert.deepEqual(node, { __typename: 'Product', id: products[2].id, name: products[2].name, version: 1 });

    const own = await user.request(NODE, { id: userAccount.id });
    assert.deepEqual(own.node, { __typename: 'Account', id: userAccount.id, username: userAccount.username });
    const other = await user.request(NODE, { id: adminAccount.id });
    assert.equal(other.node, null, "a user does not resolve another account");
    const nothing = await user.request(NODE, { id: 'not-an-id' });
    assert.equal(nothing.node, null);

    const asUser = await user.request(NODES, { ids: [adminAccount.id, userAccount.id, products[0].id] });
    assert.deepEqual(
      asUser.nodes.map((n) => n && n.__typename),
      [null, 'Account', 'Product'],
      'the same guards as the typed fields, in the order asked',
    );
    const asAdmin = await admin.request(NODES, { ids: [userAccount.id, products[0].id, adminAccount.id] });
    assert.deepEqual(
      asAdmin.nodes.map((n) => n.username ?? n.name),
      [userAccount.username, products[0].name, adminAccount.username],
      'an admin (user list) resolves any account',
    );

    const tooMany = await errorsOf(user.request(NODES, { ids: Array(101).fill(products[0].id) }));
    assert.deepEqual(codesOf(tooMany), ['BAD_USER_INPUT']);
  });

  test('two admins save the same version: one wins, the other gets CONFLICT and writes nothing', async () => {
    const other = clientWith((await secondAdmin('catalog_admin', (await signInAdmin()).token)).token);
    const { createProduct: product } = await admin.request(CREATE_PRODUCT, {
      input: { name: `${tag} contested`, description: 'two admins edit it', price: '10.00', stock: 4 },
    });
    const { node: read } = await other.request(NODE, { id: product.id });
    assert.equal(read.version, 1, 'both admins read version 1');

    const attempts = await Promise.allSettled([
      admin.request(UPDATE_PRODUCT, { id: product.id, input: { price: '11.00' }, expectedVersion: 1 }),
      other.request(UPDATE_PRODUCT, { id: product.id, input: { price: '12.00' }, expectedVersion: 1 }),
    ]);
    const won = attempts.filter((a) => a.status === 'fulfilled');
    const lost = attempts.filter((a) => a.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one save succeeds');
    assert.equal(lost.length, 1);
    const winner = won[0].value.updateProduct;
    assert.equal(winner.version, 2);
    assert.ok(Date.parse(winner.updatedAt) >= Date.parse(product.updatedAt), "a new updatedAt");

    const [conflict] = lost[0].reason.response.errors;
    assert.equal(conflict.extensions.code, 'CONFLICT');
    assert.equal(conflict.extensions.field, 'expectedVersion');
    assert.equal(conflict.extensions.currentVersion, 2, 'the answer says which version it is at');
    assert.deepEqual(conflict.path, ['updateProduct']);

    const [now] = (await admin.request(CART, { ids: [product.id] })).nodes;
    assert.equal(now.price, winner.price, "the loser's price was not written");
    assert.equal(now.version, 2);

    // The loser reads again and reapplies on the current version.
    const loserPrice = winner.price === '11.00' ? '12.00' : '11.00';
    const { updateProduct: retried } = await (winner.price === '11.00' ? other : admin).request(UPDATE_PRODUCT, {
      id: product.id,
      input: { price: loserPrice },
      expectedVersion: conflict.extensions.currentVersion,
    });
    assert.equal(retried.version, 3);
    assert.equal(retried.price, loserPrice);

    // A stale delete is refused and deletes nothing; the current version deletes.
    const staleDelete = await errorsOf(admin.request(DELETE_PRODUCT, { id: product.id, expectedVersion: 2 }));
    assert.deepEqual(codesOf(staleDelete), ['CONFLICT']);
    assert.equal(staleDelete[0].extensions.currentVersion, 3);
    assert.equal((await admin.request(NODE, { id: product.id })).node.version, 3, 'still there');
    const { deleteProduct } = await other.request(DELETE_PRODUCT, { id: product.id, expectedVersion: 3 });
    assert.equal(deleteProduct, product.id);
    assert.equal((await admin.request(NODE, { id: product.id })).node, null, 'deleted');
  });

  test('adjustStock adds atomically, never below zero, and needs its permission', async () => {
    const { createProduct: product } = await admin.request(CREATE_PRODUCT, {
      input: { name: `${tag} stocked`, description: 'adjusted', price: '2.00', stock: 5 },
    });
    const up = (await admin.request(ADJUST_STOCK, { id: product.id, delta: 3 })).adjustStock;
    assert.deepEqual([up.stock, up.version], [8, 2]);
    const down = (await admin.request(ADJUST_STOCK, { id: product.id, delta: -8 })).adjustStock;
    assert.deepEqual([down.stock, down.version], [0, 3]);

    for (const delta of [-1, 0]) {
      const errors = await errorsOf(admin.request(ADJUST_STOCK, { id: product.id, delta }));
      assert.deepEqual(codesOf(errors), ['BAD_USER_INPUT'], `delta ${delta}`);
      assert.equal(errors[0].extensions.field, 'delta');
    }

    // Twenty checkouts and restocks at once all count. The stock covers every checkout, so
    // none is refused whatever order they run in.
    const deltas = Array.from({ length: 20 }, (_, i) => (i % 4 === 3 ? -1 : 2));
    const checkouts = deltas.filter((delta) => delta < 0).length;
    await admin.request(ADJUST_STOCK, { id: product.id, delta: checkouts });
    await Promise.all(deltas.map((delta) => admin.request(ADJUST_STOCK, { id: product.id, delta })));
    const { nodes } = await admin.request(CART, { ids: [product.id] });
    assert.equal(nodes[0].stock, checkouts + deltas.reduce((a, b) => a + b, 0), 'exactly the sum');
    assert.equal(nodes[0].version, 4 + deltas.length, 'one version per adjustment');

    const forbidden = await errorsOf(user.request(ADJUST_STOCK, { id: product.id, delta: 1 }));
    assert.deepEqual(codesOf(forbidden), ['FORBIDDEN']);
  });
});
