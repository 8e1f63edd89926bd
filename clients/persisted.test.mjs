// Automatic persisted queries with the real clients (lib/apq.mjs): Apollo Client's
// PersistedQueryLink (useGETForHashedQueries) and urql's persistedExchange (GET for persisted
// queries). A fetch wrapper records every request: an operation the server does not know yet
// goes out as a hash-only GET, gets PersistedQueryNotFound, and is sent again with its
// document; from then on it is one hash-only GET. A restarted server has forgotten every hash
// (each replica keeps its own store in memory): the clients send the documents again by
// themselves, and the answers do not change.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client/core';
import { Client, fetchExchange, gql as urqlGql } from '@urql/core';

import { signInAdmin } from './lib/accounts.mjs';
import { apolloPersistedQueries, urqlPersistedQueries } from './lib/apq.mjs';
import { storefrontUrl, uniqueUsername } from './lib/env.mjs';
import { cannotStartServers, recordingFetch, shapeOf, startServer } from './lib/server.mjs';

/** Apollo Client with APQ on, against `graphql`, sending through `sent`. */
function apolloClient(graphql, token, sent) {
  return new ApolloClient({
    link: ApolloLink.from([
      apolloPersistedQueries(),
      new HttpLink({ uri: graphql, fetch: sent, headers: { authorization: `Bearer ${token}` } }),
    ]),
    cache: new InMemoryCache(),
    defaultOptions: { query: { fetchPolicy: 'no-cache' } },
  });
}

/** urql with APQ on, against `graphql`, sending through `sent`. */
function urqlClient(graphql, token, sent) {
  return new Client({
    url: graphql,
    exchanges: [urqlPersistedQueries(), fetchExchange],
    fetch: sent,
    fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    requestPolicy: 'network-only',
  });
}

async function urqlQuery(client, document) {
  const result = await client.query(document, {}).toPromise();
  assert.equal(result.error, undefined, `${result.error}`);
  return result.data;
}

/** [method, what was sent, status] of each request since the last look. */
const shapes = (sent) => sent.take().map((r) => [r.method, shapeOf(r), r.status]);

/** A query no earlier run sent (its operation name is new), so its hash is new too. */
const newQuery = (prefix) => `query ${uniqueUsername(prefix)} { account { id username role } }`;

const MISS_THEN_DOCUMENT_APOLLO = [
  ['GET', 'hash', 400],
  ['POST', 'document+hash', 200], // Apollo sends the document by POST, whatever the method before
];
const MISS_THEN_DOCUMENT_URQL = [
  ['GET', 'hash', 400],
  ['GET', 'document+hash', 200], // urql keeps GET while the URL stays short
];
const HIT = [['GET', 'hash', 200]];

describe('automatic persisted queries on first use', () => {
  let token;
  before(async () => {
    ({ token } = await signInAdmin());
  });

  test('Apollo Client: miss, document, then hash-only GETs', async () => {
    const sent = recordingFetch();
    const client = apolloClient(`${storefrontUrl()}/graphql`, token, sent);
    const query = gql(newQuery('apq_apollo'));
    const first = await client.query({ query });
    assert.deepEqual(shapes(sent), MISS_THEN_DOCUMENT_APOLLO);
    assert.equal(first.data.account.role, 'admin');
    for (let i = 0; i < 3; i += 1) {
      const again = await client.query({ query });
      assert.deepEqual(again.data, first.data);
      assert.deepEqual(shapes(sent), HIT);
    }
    client.stop();
  });

  test('urql: miss, document, then hash-only GETs', async () => {
    const sent = recordingFetch();
    const client = urqlClient(`${storefrontUrl()}/graphql`, token, sent);
    const query = urqlGql(newQuery('apq_urql'));
    const first = await urqlQuery(client, query);
    assert.deepEqual(shapes(sent), MISS_THEN_DOCUMENT_URQL);
    assert.equal(first.account.role, 'admin');
    for (let i = 0; i < 3; i += 1) {
      assert.deepEqual(await urqlQuery(client, query), first);
      assert.deepEqual(shapes(sent), HIT);
    }
  });
});

describe('automatic persisted queries after a server restart', { skip: cannotStartServers() }, () => {
  let server;
  let token;
  before(async () => {
    server = await startServer();
    ({ token } = await signInAdmin());
  });
  after(async () => {
    await server?.stop();
  });

  test('Apollo Client and urql send their documents again, and get the same answers', async () => {
    const apolloSent = recordingFetch();
    const urqlSent = recordingFetch();
    const apollo = apolloClient(server.graphql, token, apolloSent);
    const urql = urqlClient(server.graphql, token, urqlSent);
    const apolloQuery = gql(newQuery('apq_restart_apollo'));
    const urqlQueryDoc = urqlGql(newQuery('apq_restart_urql'));

    const apolloFirst = await apollo.query({ query: apolloQuery });
    const urqlFirst = await urqlQuery(urql, urqlQueryDoc);
    assert.deepEqual(shapes(apolloSent), MISS_THEN_DOCUMENT_APOLLO);
    assert.deepEqual(shapes(urqlSent), MISS_THEN_DOCUMENT_URQL);
    await apollo.query({ query: apolloQuery });
    await urqlQuery(urql, urqlQueryDoc);
    assert.deepEqual(shapes(apolloSent), HIT);
    assert.deepEqual(shapes(urqlSent), HIT);

    await server.restart();

    assert.deepEqual((await apollo.query({ query: apolloQuery })).data, apolloFirst.data);
    assert.deepEqual(await urqlQuery(urql, urqlQueryDoc), urqlFirst);
    assert.deepEqual(shapes(apolloSent), MISS_THEN_DOCUMENT_APOLLO, 'the restarted server forgot the hash');
    assert.deepEqual(shapes(urqlSent), MISS_THEN_DOCUMENT_URQL, 'the restarted server forgot the hash');
    await apollo.query({ query: apolloQuery });
    await urqlQuery(urql, urqlQueryDoc);
    assert.deepEqual(shapes(apolloSent), HIT);
    assert.deepEqual(shapes(urqlSent), HIT);
    apollo.stop();
  });
});
