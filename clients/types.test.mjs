// Types that tools understand, against the real server: every DateTime the API answers is what
// `Date.prototype.toISOString()` writes, and the cache snippets of docs/clients.md
// (lib/cache/urql.mjs, lib/cache/apollo.mjs) declare every type without an id, so that
// neither cache warns over queries that touch each of them.
//
// Graphcache warns once per message per process, so this file runs in a process of its own
// (node --test runs each file so) and the no-warning tests come first.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, getNamedType, isObjectType } from 'graphql';
import { Client, fetchExchange, gql } from '@urql/core';
import { cacheExchange } from '@urql/exchange-graphcache';

import * as urql from './lib/cache/urql.mjs';
import { registerUser, run, signInAdmin } from './lib/accounts.mjs';
import { admin, clientsDir, storefrontUrl, uniqueUsername } from './lib/env.mjs';

// Apollo Client 4 checks and warns only in development builds: what a bundler's development
// mode sets, set before Apollo is first imported.
globalThis.__DEV__ = true;
const { ApolloClient, HttpLink, InMemoryCache, gql: apolloGql } = await import('@apollo/client/core');
const apollo = await import('./lib/cache/apollo.mjs');

const schema = buildSchema(readFileSync(join(clientsDir, '..', 'schema.graphql'), 'utf8'));

/** The root types: no entities. */
const roots = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()];

/** The object types a cache sees that have no `id` field (the root types are no entities). */
const keylessInSchema = Object.values(schema.getTypeMap())
  .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
  .filter((type) => !roots.includes(type))
  .filter((type) => !('id' in type.getFields()))
  .map((type) => type.name)
  .sort();

/** Whether only fields of the subscription type have the type `name`: only a WebSocket reaches
 * it, which the tests of this file do not open. */
function onlySubscriptionsAnswer(name) {
  const holders = Object.values(schema.getTypeMap())
    .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
    .filter((type) => Object.values(type.getFields()).some((field) => getNamedType(field.type).name === name));
  return holders.length > 0 && holders.every((type) => type === schema.getSubscriptionType());
}

/** Whether only fields of the mutation type have the type `name` (no query reaches it). */
function onlyMutationsAnswer(name) {
  const holders = Object.values(schema.getTypeMap())
    .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
    .filter((type) => Object.values(type.getFields()).some((field) => getNamedType(field.type).name === name));
  return holders.length > 0 && holders.every((type) => type === schema.getMutationType());
}

// Queries and mutations that between them reach every object type of the schema: roles,
// permissions and the policy, the audit trail, accounts, products, and a sign-in.
const READ_EVERYTHING = `
  query ReadEverything($product: ID!) {
    myPermissions { object action scope }
    roles { id name inherits permissions { object action scope } }
    policy { storage version rules roles { id name inherits permissions { object action scope } } }
    account { id username role createdAt deactivatedAt }
    users(first: 5) {
      totalCount
      edges { cursor node { id username role createdAt deactivatedAt } }
      nodes { id username }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
    products(first: 5) {
      totalCount
      edges { cursor node { id name price stock version createdAt updatedAt } }
      nodes { id name }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
    product(id: $product) {
      id name createdBy { id username }
      history(first: 5) {
        totalCount
        edges { cursor node { id occurredAt action changes { field before after } } }
        nodes { id occurredAt actor { id username } }
        pageInfo { hasNextPage endCursor }
      }
    }
    auditEvents(first: 10) {
      totalCount
      edges { cursor node { id occurredAt actor { id username } action entity entityId requestId changes { field before after } } }
      nodes { id occurredAt }
      pageInfo { hasNextPage endCursor }
    }
    node(id: $product) { id ... on Product { name } }
    nodes(ids: [$product]) { id ... on Product { name } }
  }
`;

// The same fields again with other subfields, as another screen would read them: what a cache
// must merge into what it holds.
const READ_AGAIN = `
  query ReadAgain($product: ID!) {
    myPermissions { action }
    roles { id permissions { action } }
    policy { rules }
    account { id username }
    users(first: 5) { totalCount pageInfo { endCursor } }
    products(first: 5) { totalCount pageInfo { hasNextPage } }
    product(id: $product) { id history(first: 5) { totalCount pageInfo { endCursor } } }
    auditEvents(first: 10) { totalCount nodes { id changes { field } } }
  }
`;

const LOGIN_AGAIN = `
  mutation Login($input: LoginInput!) { login(input: $input) { accessToken account { id } } }
`;

const LOGIN = `
  mutation Login($input: LoginInput!) {
    login(input: $input) { accessToken tokenType expiresIn refreshToken refreshTokenExpiresIn account { id username role } }
  }
`;

const UPDATE_PRODUCT = `
  mutation UpdateProduct($id: ID!, $input: UpdateProductInput!) {
    updateProduct(id: $id, input: $input) { id name price stock version updatedAt }
  }
`;

/** Every object type a selection of `document` reaches, by walking the schema. */
function typesReached(document) {
  const reached = new Set();
  const walk = (parent, selectionSet) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === 'InlineFragment') {
        walk(schema.getType(selection.typeCondition.name.value), selection.selectionSet);
      } else if (selection.kind === 'Field' && selection.selectionSet) {
        const type = getNamedType(parent.getFields()[selection.name.value].type);
        if (isObjectType(type)) reached.add(type.name);
        else for (const each of schema.getPossibleTypes(type)) reached.add(each.name);
        walk(type, selection.selectionSet);
      }
    }
  };
  for (const definition of document.definitions) {
    const root = definition.operation === 'mutation' ? schema.getMutationType() : schema.getQueryType();
    walk(root, definition.selectionSet);
  }
  return reached;
}

/** Runs `work` with console.warn and console.error collected; returns what they were given. */
async function warningsDuring(work) {
  const warnings = [];
  const { warn, error } = console;
  console.warn = (...args) => warnings.push(args.map(String).join(' '));
  console.error = (...args) => warnings.push(args.map(String).join(' '));
  try {
    await work();
  } finally {
    Object.assign(console, { warn, error });
  }
  return warnings;
}

let token;
let productId;

before(async () => {
  ({ token } = await signInAdmin());
  const { createProduct } = await run(
    'mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }',
    { input: { name: uniqueUsername('typed'), price: '3.50' } },
    token,
  );
  productId = createProduct.id;
  await run(UPDATE_PRODUCT, { id: productId, input: { stock: 7 } }, token);
});

describe('urql Graphcache (lib/cache/urql.mjs)', () => {
  const client = (exchange) =>
    new Client({
      url: `${storefrontUrl()}/graphql`,
      exchanges: [exchange, fetchExchange],
      fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    });

  /** Every operation above, through `exchange`, each answered without an error. */
  async function readEverything(exchange) {
    const urqlClient = client(exchange);
    const results = [
      await urqlClient.query(gql(READ_EVERYTHING), { product: productId }).toPromise(),
      await urqlClient
        .query(gql(READ_AGAIN), { product: productId }, { requestPolicy: 'network-only' })
        .toPromise(),
      await urqlClient.mutation(gql(LOGIN), { input: admin() }).toPromise(),
      await urqlClient.mutation(gql(LOGIN_AGAIN), { input: admin() }).toPromise(),
      await urqlClient
        .mutation(gql(UPDATE_PRODUCT), { id: productId, input: { name: uniqueUsername('renamed') } })
        .toPromise(),
    ];
    for (const result of results) assert.equal(result.error, undefined);
    return results;
  }

  test('the operations reach every object type of the schema', () => {
    const reached = new Set();
    for (const document of [READ_EVERYTHING, READ_AGAIN, LOGIN, LOGIN_AGAIN, UPDATE_PRODUCT]) {
      for (const name of typesReached(gql(document))) reached.add(name);
    }
    const objects = Object.values(schema.getTypeMap())
      .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
      .filter((type) => !roots.includes(type))
      .map((type) => type.name)
      .filter((name) => !onlySubscriptionsAnswer(name));
    assert.deepEqual([...reached].sort(), objects.sort());
  });

  test('the snippet declares exactly the types without an id', () => {
    assert.deepEqual(Object.keys(urql.keys).sort(), keylessInSchema);
    for (const key of Object.values(urql.keys)) assert.equal(key(), null);
  });

  test('no warning over roles, permissions, the audit trail, accounts, products and a sign-in', async () => {
    const warnings = await warningsDuring(() => readEverything(urql.createProductCache()));
    assert.deepEqual(warnings, []);
  });

  test('without one of its declarations, Graphcache warns about that type', async () => {
    // Graphcache itself never warns about names ending in Connection or Edge, or PageInfo, nor
    // about a type only a mutation answers (it does not store a mutation's own answer): for
    // those the declaration is the documentation, and the test above keeps it complete.
    const warnedAbout = keylessInSchema
      .filter((name) => !/PageInfo|(Connection|Edge)$/.test(name))
      .filter((name) => !onlyMutationsAnswer(name));
    assert.deepEqual(warnedAbout, ['AuditChange', 'Permission', 'Policy']);
    for (const name of warnedAbout) {
      const { [name]: _left, ...others } = urql.keys;
      const warnings = await warningsDuring(() => readEverything(cacheExchange({ keys: others })));
      assert.ok(warnings.length > 0, `no warning without ${name}`);
      assert.ok(
        warnings.every((warning) => warning.includes(`keys\` config for \`${name}\``)),
        `without ${name}: ${warnings.join('\n')}`,
      );
    }
  });
});

describe('Apollo Client InMemoryCache (lib/cache/apollo.mjs)', () => {
  /** Every operation above through a client with `cache`, twice over. */
  async function readEverything(cache) {
    const client = new ApolloClient({
      link: new HttpLink({ uri: `${storefrontUrl()}/graphql`, headers: { authorization: `Bearer ${token}` } }),
      cache,
    });
    const variables = { product: productId };
    for (const name of [uniqueUsername('first'), uniqueUsername('second')]) {
      await client.query({ query: apolloGql(READ_EVERYTHING), variables, fetchPolicy: 'network-only' });
      await client.query({ query: apolloGql(READ_AGAIN), variables, fetchPolicy: 'network-only' });
      await client.mutate({ mutation: apolloGql(LOGIN), variables: { input: admin() } });
      await client.mutate({ mutation: apolloGql(LOGIN_AGAIN), variables: { input: admin() } });
      await client.mutate({ mutation: apolloGql(UPDATE_PRODUCT), variables: { id: productId, input: { name } } });
    }
  }

  test('the snippet declares exactly the types without an id', () => {
    const declared = Object.entries(apollo.typePolicies)
      .filter(([, policy]) => policy.keyFields === false)
      .map(([name]) => name)
      .sort();
    assert.deepEqual(declared, keylessInSchema);
  });

  test('no warning over roles, permissions, the audit trail, accounts, products and a sign-in', async () => {
    assert.deepEqual(await warningsDuring(() => readEverything(apollo.createCache())), []);
  });

  test('without merging the types without an id, Apollo warns', async () => {
    const typePolicies = Object.fromEntries(
      Object.entries(apollo.typePolicies).map(([name, { merge: _merge, ...policy }]) => [name, policy]),
    );
    const warnings = await warningsDuring(() => readEverything(new InMemoryCache({ typePolicies })));
    assert.ok(warnings.length > 0, 'no warning');
  });
});

describe('DateTime', () => {
  test('every DateTime the API answers is what toISOString() writes', async () => {
    const user = await registerUser('clock');
    await run('mutation($id: ID!) { deactivateAccount(userId: $id) { id } }', { id: user.account.id }, token);
    const data = await run(READ_EVERYTHING, { product: productId }, token);
    const users = await run(
      'query { users(first: 100) { nodes { id createdAt deactivatedAt } } }',
      {},
      token,
    );

    const times = [];
    const collect = (value, path) => {
      if (Array.isArray(value)) value.forEach((item, i) => collect(item, `${path}[${i}]`));
      else if (value && typeof value === 'object') {
        const timeChange = ['deactivatedAt'].includes(value.field);
        for (const [key, inner] of Object.entries(value)) {
          const isTime =
            ['createdAt', 'updatedAt', 'deactivatedAt', 'occurredAt'].includes(key) ||
            (timeChange && ['before', 'after'].includes(key));
          if (isTime && typeof inner === 'string') times.push([`${path}.${key}`, inner]);
          else collect(inner, `${path}.${key}`);
        }
      }
    };
    collect(data, 'data');
    collect(users, 'users');
    for (const key of ['createdAt', 'updatedAt', 'deactivatedAt', 'occurredAt', 'after']) {
      assert.ok(times.some(([path]) => path.endsWith(`.${key}`)), `no ${key} read`);
    }
    for (const [path, text] of times) {
      assert.equal(new Date(text).toISOString(), text, path);
    }
  });
});
