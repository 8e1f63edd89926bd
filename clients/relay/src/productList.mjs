// Relay without React: what usePaginationFragment and useMutation do for the product list of
// documents.js, with the artifacts relay-compiler writes to __generated__/ (a Relay app gets the
// same imports from babel-plugin-relay). @appendNode and @deleteEdge keep the list right; the
// updaters keep its totalCount right and take a deleted product out of the store.
import {
  Environment,
  Network,
  RecordSource,
  Store,
  commitMutation,
  createOperationDescriptor,
  fetchQuery,
  getSelector,
} from 'relay-runtime';
import ProductCardFragment from './__generated__/ProductCard_product.graphql.js';
import ProductCardRefetchQuery from './__generated__/ProductCardRefetchQuery.graphql.js';
import ProductListCreateMutation from './__generated__/ProductListCreateMutation.graphql.js';
import ProductListDeleteMutation from './__generated__/ProductListDeleteMutation.graphql.js';
import ProductListPageQuery from './__generated__/ProductListPageQuery.graphql.js';
import ProductListPaginationQuery from './__generated__/ProductListPaginationQuery.graphql.js';
import ProductListFragment from './__generated__/ProductList_query.graphql.js';

/** A Relay environment whose network posts to `url` with the access token `token()` gives. */
export function createEnvironment(url, token) {
  const network = Network.create(async (request, variables) => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token()}` },
      body: JSON.stringify({ query: request.text, variables }),
    });
    return response.json(); // GraphQL errors reject the operation
  });
  return new Environment({ network, store: new Store(new RecordSource()) });
}

/** Reads the first page of a list and keeps it in the store (as useLazyLoadQuery does). */
export async function loadList(environment, { count, orderBy, filter }) {
  const variables = { count, orderBy, filter };
  const operation = createOperationDescriptor(ProductListPageQuery, variables);
  const retained = environment.retain(operation);
  await fetchQuery(environment, ProductListPageQuery, variables).toPromise();
  return { operation, retained, variables };
}

/**
 * The list as the store holds it, every page read so far, without a request; `connectionId`
 * (the `__id` of the connection) is what the mutations' `connections` take.
 */
export function readList(environment, list) {
  const root = environment.lookup(list.operation.fragment).data;
  const { products } = environment.lookup(getSelector(ProductListFragment, root)).data;
  return {
    connectionId: products.__id,
    totalCount: products.totalCount,
    hasNextPage: products.pageInfo.hasNextPage,
    endCursor: products.pageInfo.endCursor,
    products: products.edges.map((edge) => readCard(environment, edge.node)),
  };
}

/** One product card's data from the store. */
export function readCard(environment, productRef) {
  return environment.lookup(getSelector(ProductCardFragment, productRef)).data;
}

/** Reads the next page into the same list (what usePaginationFragment's loadNext does). */
export async function loadNext(environment, list, count) {
  const { endCursor } = readList(environment, list);
  const variables = { ...list.variables, count, cursor: endCursor };
  await fetchQuery(environment, ProductListPaginationQuery, variables).toPromise();
}

/** Reads one product again through `node(id:)` (what useRefetchableFragment's refetch does). */
export async function refetchCard(environment, id) {
  await fetchQuery(environment, ProductCardRefetchQuery, { id }, { fetchPolicy: 'network-only' }).toPromise();
  const { node } = environment.lookup(createOperationDescriptor(ProductCardRefetchQuery, { id }).fragment).data;
  return node && readCard(environment, node);
}

function commit(environment, config) {
  return new Promise((resolve, reject) => {
    commitMutation(environment, {
      ...config,
      onCompleted: (response, errors) => (errors?.length ? reject(errors) : resolve(response)),
      onError: reject,
    });
  });
}

function addToTotalCount(store, connectionIds, delta) {
  for (const id of connectionIds) {
    const connection = store.get(id);
    const count = connection?.getValue('totalCount');
    if (typeof count === 'number') connection.setValue(count + delta, 'totalCount');
  }
}

/** Creates a product and adds it at the end of the lists named (oldest first: it is the newest). */
export async function createProduct(environment, connections, input) {
  const response = await commit(environment, {
    mutation: ProductListCreateMutation,
    variables: { input, connections },
    updater: (store) => addToTotalCount(store, connections, 1),
  });
  return response.createProduct;
}

/** Deletes a product: it leaves the lists named, and the store. */
export async function deleteProduct(environment, connections, id, expectedVersion) {
  await commit(environment, {
    mutation: ProductListDeleteMutation,
    variables: { id, connections, expectedVersion },
    updater: (store) => {
      addToTotalCount(store, connections, -1);
      store.delete(id);
    },
  });
}
