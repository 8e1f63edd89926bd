// Relay: relay-compiler accepts the documents of relay/src/documents.js against
// ../schema.graphql (a Product fragment with @refetchable, a @connection list with
// @refetchable pagination, @appendNode and @deleteEdge mutations), and the artifacts it writes
// run with relay-runtime's Environment against the real server (relay/src/productList.mjs,
// shown in docs/clients.md as it is): the list stays right after create and delete, read from
// the store alone.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { run, signInAdmin } from './lib/accounts.mjs';
import { clientsDir, storefrontUrl, uniqueUsername } from './lib/env.mjs';

const relayDir = path.join(clientsDir, 'relay');
const compilerBin = path.join(clientsDir, 'node_modules', '.bin', 'relay-compiler');

/** Runs relay-compiler in `dir` (where its relay.config.json is). */
function relayCompiler(dir, ...args) {
  const result = spawnSync(compilerBin, ['--output', 'quiet-with-errors', ...args], {
    cwd: dir,
    encoding: 'utf8',
  });
  // Without a terminal the compiler still colours its messages.
  const output = `${result.stdout}${result.stderr}`.replace(/\x1b\[[0-9;]*m/g, '');
  return { status: result.status, output };
}

function artifact(name) {
  return readFileSync(path.join(relayDir, 'src', '__generated__', `${name}.graphql.js`), 'utf8');
}

describe('relay-compiler', () => {
  test('accepts the documents, @refetchable on a Product fragment included', () => {
    const { status, output } = relayCompiler(relayDir);
    assert.equal(status, 0, `relay-compiler rejected relay/src:\n${output}`);
    assert.equal(output.trim(), '', `relay-compiler reported:\n${output}`);

    // The refetch query it made for the Product fragment goes through `node(id:)`.
    assert.match(artifact('ProductCardRefetchQuery'), /node\(id: \$id\)/);
    assert.match(artifact('ProductListPaginationQuery'), /products\(first: \$count, after: \$cursor/);
  });

  test('rejects a document the schema does not allow (so the test above can fail)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'relay-reject-'));
    try {
      mkdirSync(path.join(dir, 'src'));
      writeFileSync(
        path.join(dir, 'relay.config.json'),
        JSON.stringify({
          src: './src',
          schema: path.join(clientsDir, '..', 'schema.graphql'),
          language: 'javascript',
          noSourceControl: true,
        }),
      );
      writeFileSync(
        path.join(dir, 'src', 'bad.js'),
        'graphql`fragment bad_product on Product @refetchable(queryName: "BadQuery") { id colour }`;\n',
      );
      const { status, output } = relayCompiler(dir);
      assert.notEqual(status, 0, 'relay-compiler accepted an unknown field');
      assert.match(output, /colour/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('relay-runtime against the server (relay/src/productList.mjs)', () => {
  const tag = uniqueUsername('relay');
  const filter = { nameContains: tag };
  let token;
  let relay;
  let environment;
  let list;

  const names = (products) => products.map((p) => p.name);
  const serverNames = async () => {
    const { products } = await run(
      'query($filter: ProductFilter) { products(first: 100, filter: $filter) { totalCount nodes { name } } }',
      { filter },
      token,
    );
    return { names: products.nodes.map((p) => p.name), totalCount: products.totalCount };
  };

  before(async () => {
    // The artifacts exist once relay-compiler has run (the describe above, or here alone).
    const { status, output } = relayCompiler(relayDir);
    assert.equal(status, 0, output);
    relay = await import('./relay/src/productList.mjs');
    ({ token } = await signInAdmin());
    for (let i = 1; i <= 3; i += 1) {
      await run(
        'mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }',
        { input: { name: `${tag} ${i}`, description: 'made by relay.test.mjs', price: `${i}.00`, stock: i } },
        token,
      );
    }
    environment = relay.createEnvironment(`${storefrontUrl()}/graphql`, () => token);
  });

  test('a @connection list read a page at a time', async () => {
    list = await relay.loadList(environment, { count: 2, filter });
    const firstPage = relay.readList(environment, list);
    assert.deepEqual(names(firstPage.products), [`${tag} 1`, `${tag} 2`]);
    assert.equal(firstPage.hasNextPage, true);
    assert.equal(firstPage.totalCount, 3);

    await relay.loadNext(environment, list, 2);
    const whole = relay.readList(environment, list);
    assert.deepEqual(names(whole.products), [1, 2, 3].map((i) => `${tag} ${i}`));
    assert.equal(whole.hasNextPage, false);
  });

  test('@appendNode puts a created product at the end of the list', async () => {
    const { connectionId } = relay.readList(environment, list);
    const created = await relay.createProduct(environment, [connectionId], {
      name: `${tag} 4`,
      description: 'created through Relay',
      price: '4.00',
      stock: 4,
    });
    assert.equal(created.id.length > 0, true);
    const cached = relay.readList(environment, list);
    assert.deepEqual(names(cached.products), [1, 2, 3, 4].map((i) => `${tag} ${i}`));
    assert.equal(cached.products.at(-1).version, 1);
    assert.equal(cached.totalCount, 4);
    assert.deepEqual(
      { names: names(cached.products), totalCount: cached.totalCount },
      await serverNames(),
      'the store lists what the server lists',
    );
  });

  test('@refetchable: a product card read again through node(id:) after another change', async () => {
    const card = relay.readList(environment, list).products[0];
    await run(
      'mutation($id: ID!) { updateProduct(id: $id, input: { price: "9.50" }) { id } }',
      { id: card.id },
      token,
    );
    const refetched = await relay.refetchCard(environment, card.id);
    assert.equal(refetched.price, '9.50');
    assert.equal(refetched.version, card.version + 1);
    assert.equal(relay.readList(environment, list).products[0].price, '9.50', 'the list shows it too');
  });

  test('@deleteEdge and the updater take a deleted product out of the list and the store', async () => {
    const { connectionId, products } = relay.readList(environment, list);
    const victim = products[1];
    await relay.deleteProduct(environment, [connectionId], victim.id, victim.version);
    const cached = relay.readList(environment, list);
    assert.deepEqual(names(cached.products), [1, 3, 4].map((i) => `${tag} ${i}`));
    assert.equal(cached.totalCount, 3);
    assert.equal(environment.getStore().getSource().get(victim.id), null, 'deleted from the store');
    assert.deepEqual({ names: names(cached.products), totalCount: cached.totalCount }, await serverNames());
  });

  test('a stale expectedVersion is CONFLICT, and the list keeps the product', async () => {
    const { connectionId, products } = relay.readList(environment, list);
    const kept = products[0];
    await assert.rejects(relay.deleteProduct(environment, [connectionId], kept.id, kept.version - 1), (error) => {
      // Relay's error for an answer without data carries the GraphQL errors as `source`.
      const [conflict] = error.source.errors;
      assert.equal(conflict.extensions.code, 'CONFLICT');
      assert.equal(conflict.extensions.currentVersion, kept.version);
      return true;
    });
    const after = relay.readList(environment, list);
    assert.deepEqual(names(after.products), names(products));
    assert.equal(after.totalCount, products.length);
  });
});
