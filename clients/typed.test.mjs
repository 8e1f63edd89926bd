// GraphQL Code Generator end to end: codegen.ts's client preset writes typed documents and
// persisted-documents.json from typed/src against ../schema.graphql; `tsc --noEmit` type-checks
// typed/src/client.ts against them (and refuses a misuse of the scalars' types, so the check can
// fail); then a server started with TRUSTED_DOCUMENTS=persisted-documents.json runs the typed
// client's operations by id and refuses any other document.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { admin, clientsDir, uniqueUsername } from './lib/env.mjs';
import { cannotStartServers, recordingFetch, startServer } from './lib/server.mjs';

const typedDir = path.join(clientsDir, 'typed');
const manifestPath = path.join(typedDir, 'src', 'gql', 'persisted-documents.json');
const bin = (name) => path.join(clientsDir, 'node_modules', '.bin', name);

/** Runs a package's command in clients/; its status and output. */
function run(command, ...args) {
  const result = spawnSync(bin(command), args, { cwd: clientsDir, encoding: 'utf8' });
  const output = `${result.stdout}${result.stderr}`.replace(/\x1b\[[0-9;]*m/g, '');
  return { status: result.status, output };
}

describe('GraphQL Code Generator and tsc', () => {
  test('codegen writes typed documents and the persisted-documents manifest', () => {
    const { status, output } = run('graphql-codegen', '--config', 'codegen.ts');
    assert.equal(status, 0, output);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    const operations = Object.values(manifest).map((d) => d.match(/^(query|mutation) (\w+)/)?.[2]);
    assert.deepEqual(operations.sort(), ['CreateProduct', 'Login', 'ProductPage']);
    for (const id of Object.keys(manifest)) assert.match(id, /^sha256:[0-9a-f]{64}$/);
    const types = readFileSync(path.join(typedDir, 'src', 'gql', 'graphql.ts'), 'utf8');
    // The scalars as JSON carries them: ID, Decimal and DateTime as strings.
    assert.match(
      types,
      /ProductPageQuery = \{ products: \{ totalCount: number, nodes: Array<\{ id: string, name: string, price: string, stock: number, createdAt: string, updatedAt: string, version: number \}>/,
    );
    assert.match(types, /priceMin\?: string \| null \| undefined;/);
  });

  test('tsc --noEmit accepts the typed client', () => {
    const { status, output } = run('tsc', '--noEmit', '-p', path.join(typedDir, 'tsconfig.json'));
    assert.equal(status, 0, `tsc:\n${output}`);
  });

  test('tsc refuses code that takes a Decimal for a number or a DateTime for a Date', () => {
    const dir = mkdtempSync(path.join(typedDir, '.misuse-'));
    try {
      writeFileSync(
        path.join(dir, 'misuse.ts'),
        [
          "import { StorefrontClient } from '../src/client.js';",
          "const page = await new StorefrontClient('http://127.0.0.1:1/graphql').productPage(1);",
          'const price: number = page.nodes[0]!.price;',
          'const created: Date = page.nodes[0]!.createdAt;',
          'export { price, created };',
        ].join('\n'),
      );
      writeFileSync(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: '../tsconfig.json',
          compilerOptions: { rootDir: '..', noEmit: true },
          include: ['misuse.ts'],
        }),
      );
      const { status, output } = run('tsc', '-p', path.join(dir, 'tsconfig.json'));
      assert.notEqual(status, 0, 'tsc accepted the misuse');
      assert.match(output, /misuse\.ts\(3,7\): error TS2322: Type 'string' is not assignable to type 'number'/);
      assert.match(output, /misuse\.ts\(4,7\): error TS2322: Type 'string' is not assignable to type 'Date'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('trusted documents from the codegen manifest', { skip: cannotStartServers() }, () => {
  let server;
  let typed;
  before(async () => {
    // The client, compiled by tsc, as a frontend build ships it.
    const outDir = path.join(typedDir, 'dist');
    const { status, output } = run('tsc', '-p', path.join(typedDir, 'tsconfig.json'), '--outDir', outDir);
    assert.equal(status, 0, output);
    typed = await import(pathToFileURL(path.join(outDir, 'client.js')).href);
    server = await startServer({ TRUSTED_DOCUMENTS: manifestPath });
  });
  after(async () => {
    await server?.stop();
  });

  test('the typed client runs its operations by id', async () => {
    const sent = recordingFetch();
    const client = new typed.StorefrontClient(server.graphql, sent);
    const { username, password } = admin();
    const account = await client.signIn(username, password);
    assert.equal(account.role, 'admin');
    const tag = uniqueUsername('typed');
    const created = await client.createProduct(`${tag} lamp`, '12.50', 3);
    assert.equal(created.price, '12.50');
    assert.ok(!Number.isNaN(Date.parse(created.createdAt)));
    const page = await client.productPage(10, null, tag);
    assert.equal(page.totalCount, 1);
    assert.deepEqual(
      page.nodes.map((p) => [p.id, p.name, p.price, p.stock]),
      [[created.id, `${tag} lamp`, '12.50', 3]],
    );
    // Only ids went out: no document text.
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    assert.equal(sent.requests.length, 3);
    for (const { body } of sent.requests) {
      assert.equal(body.query, undefined);
      assert.ok(manifest[body.documentId], `${body.documentId} is listed`);
    }
  });

  test('any other document is refused with PERSISTED_QUERY_NOT_IN_LIST', async () => {
    const post = (body) =>
      fetch(server.graphql, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
      }).then((r) => r.json());
    const unlisted = await post({ query: '{ products(first: 1) { totalCount } }' });
    assert.deepEqual(unlisted.errors.map((e) => e.extensions.code), ['PERSISTED_QUERY_NOT_IN_LIST']);
    assert.equal(unlisted.data, undefined, 'nothing ran');
    const introspection = await post({ query: '{ __schema { queryType { name } } }' });
    assert.deepEqual(introspection.errors.map((e) => e.extensions.code), ['PERSISTED_QUERY_NOT_IN_LIST']);
    const unknownId = await post({ documentId: `sha256:${'0'.repeat(64)}` });
    assert.deepEqual(unknownId.errors.map((e) => e.extensions.code), ['PERSISTED_QUERY_NOT_FOUND']);
    // A listed document sent in full runs (byte for byte as listed), anonymously here.
    const listed = Object.values(JSON.parse(readFileSync(manifestPath, 'utf8'))).find((d) =>
      d.startsWith('query ProductPage'),
    );
    const byText = await post({ query: listed, variables: { first: 1 } });
    assert.deepEqual(byText.errors.map((e) => e.extensions.code), ['UNAUTHENTICATED']);
    // No playground to type other documents into.
    assert.equal((await fetch(`${server.url}/`)).status, 404);
  });
});
