// urql with Graphcache: a cache that knows which types have no id, and a paginated product
// list kept right after createProduct and deleteProduct, from the mutations' answers, without
// reading the list again.
import { gql } from '@urql/core';
import { cacheExchange } from '@urql/exchange-graphcache';
import { relayPagination } from '@urql/exchange-graphcache/extras';

// `nodes`, not `edges`: Graphcache links them to the normalized products, so an update can add
// and remove links. (relayPagination merges edges, nodes and pageInfo; not totalCount.)
export const PRODUCT_LIST = gql`
  query ProductList($first: Int, $after: String, $orderBy: [ProductOrder!], $filter: ProductFilter) {
    products(first: $first, after: $after, orderBy: $orderBy, filter: $filter) {
      nodes { id name price stock version updatedAt }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

export const CREATE_PRODUCT = gql`
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) { id name price stock version updatedAt }
  }
`;

export const DELETE_PRODUCT = gql`
  mutation DeleteProduct($id: ID!, $expectedVersion: Int) {
    deleteProduct(id: $id, expectedVersion: $expectedVersion)
  }
`;

/**
 * Where a product created just now goes in a list read with these arguments: at the `end` of
 * a list in the default order (oldest first) that keeps it, `none` in one whose `nameContains`
 * leaves it out, `unknown` for any other order or filter (read that list again).
 */
export function placeOfNewProduct(product, { orderBy, filter } = {}) {
  const defaultOrder =
    !orderBy?.length ||
    (orderBy.length === 1 && orderBy[0].field === 'CREATED_AT' && orderBy[0].direction !== 'DESC');
  const { nameContains, ...others } = filter ?? {};
  if (!defaultOrder || Object.values(others).some((value) => value != null)) return 'unknown';
  if (nameContains && !product.name.toLowerCase().includes(nameContains.toLowerCase())) return 'none';
  return 'end';
}

/** Every cached page of `products`: its arguments and its (keyless) connection. */
function productPages(cache) {
  return cache
    .inspectFields('Query')
    .filter((field) => field.fieldName === 'products')
    .map((field) => ({ args: field.arguments ?? {}, connection: cache.resolve('Query', field.fieldKey) }))
    .filter((page) => page.connection);
}

// Every type without an `id`, stored inside its parent instead of on its own: a page inside
// its list, a permission inside its role, a change inside its audit record, the policy inside
// the query or mutation that answered it, a sign-in's answer. Graphcache warns about a type
// with no `id` that is not listed. Every other type has an `id` and is normalized: `Product`,
// `Account`, `AuditEvent`, `AuditActor`, `Role`.
export const keys = {
  AccountConnection: () => null,
  AccountEdge: () => null,
  AuditChange: () => null,
  AuditEventConnection: () => null,
  AuditEventEdge: () => null,
  AuthPayload: () => null,
  PageInfo: () => null,
  Permission: () => null,
  Policy: () => null,
  ProductConnection: () => null,
  ProductEdge: () => null,
};

export function createProductCache() {
  return cacheExchange({
    keys,
    resolvers: { Query: { products: relayPagination() } },
    updates: {
      Mutation: {
        createProduct(result, _args, cache) {
          const product = result.createProduct;
          for (const { args, connection } of productPages(cache)) {
            const place = placeOfNewProduct(product, args);
            if (place === 'unknown') cache.invalidate('Query', 'products', args); // read again
            if (place !== 'end') continue;
            // Only the page that ends the list gets it: it sorts after every product there is.
            if (cache.resolve(cache.resolve(connection, 'pageInfo'), 'hasNextPage')) continue;
            const nodes = cache.resolve(connection, 'nodes') ?? [];
            cache.link(connection, 'nodes', [...nodes, cache.keyOfEntity(product)]);
          }
        },
        deleteProduct(_result, { id }, cache) {
          const gone = cache.keyOfEntity({ __typename: 'Product', id });
          for (const { connection } of productPages(cache)) {
            const nodes = cache.resolve(connection, 'nodes') ?? [];
            if (nodes.includes(gone)) cache.link(connection, 'nodes', nodes.filter((key) => key !== gone));
          }
          cache.invalidate(gone);
        },
      },
    },
  });
}
