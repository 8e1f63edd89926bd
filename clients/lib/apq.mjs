// Automatic persisted queries (APQ) for Apollo Client and urql, as docs/clients.md shows them:
// each operation is sent as the SHA-256 of its document first (queries as GETs, which HTTP
// caches can keep), and with the document only when the server answers PersistedQueryNotFound.
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { persistedExchange } from '@urql/exchange-persisted';

/** The SHA-256 of `text`, in hex, with Web Crypto (browsers, Node 20+). */
export async function sha256(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Apollo Client: put it right before the HttpLink. */
export function apolloPersistedQueries() {
  return new PersistedQueryLink({ sha256, useGETForHashedQueries: true });
}

/** urql: put it right before the fetchExchange (after Graphcache). */
export function urqlPersistedQueries() {
  return persistedExchange({
    generateHash: (query) => sha256(query),
    preferGetForPersistedQueries: 'within-url-limit',
    enableForMutation: true, // by hash too, over POST (Apollo Client does this by default)
  });
}
