// Apollo Client 4: a cache that knows which types have no id, and a paginated product list
// kept right after createProduct and deleteProduct, from the mutations' answers, without
// reading the list again.
import { InMemoryCache, gql } from '@apollo/client/core';
import { relayStylePagination } from '@apollo/client/utilities';

// Variables named as the arguments, so a list's arguments are the variables to read it with.
export const PRODUCT_LIST = gql`
  query ProductList($first: Int, $after: String, $orderBy: [ProductOrder!], $filter: ProductFilter) {
    products(first: $first, after: $after, orderBy: $orderBy, filter: $filter) {
      totalCount
      edges { cursor node { id name price stock version updatedAt } }
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

// Every type without an `id`, kept inside its parent instead of on its own: a page inside its
// list, a permission inside its role, a change inside its audit record, the policy inside the
// query or mutation that answered it, a sign-in's answer. Each is merged, as an entity's
// fields are, when another query writes the same field with other subfields (otherwise Apollo
// drops the fields it did not get again, and warns). Every other type has an `id` and is
// normalized: `Product`, `Account`, `AuditEvent`, `AuditActor`, `Role`.
const keyless = { keyFields: false, merge: true };

export const typePolicies = {
  // One cached list per order and filter; `fetchMore({ variables: { after } })` adds pages to it.
  Query: { fields: { products: relayStylePagination(['orderBy', 'filter']) } },
  AccountConnection: keyless,
  AccountEdge: keyless,
  AuditChange: keyless,
  AuditEventConnection: keyless,
  AuditEventEdge: keyless,
  AuthPayload: keyless,
  PageInfo: keyless,
  Permission: keyless,
  Policy: keyless,
  ProductConnection: keyless,
  ProductEdge: keyless,
};

export function createCache() {
  return new InMemoryCache({ typePolicies });
}

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

export async function createProduct(client, input) {
  const { data } = await client.mutate({
    mutation: CREATE_PRODUCT,
    variables: { input },
    update(cache, { data: { createProduct: product } }) {
      cache.modify({
        fields: {
          products(list, { fieldName, storeFieldName, toReference, DELETE }) {
            // `products:{"filter":…,"orderBy":…}`: the key arguments of this cached list.
            const args = JSON.parse(storeFieldName.slice(fieldName.length + 1) || '{}');
            const place = placeOfNewProduct(product, args);
            if (place === 'unknown') return DELETE; // read again when shown
            if (place === 'none' || list.pageInfo?.hasNextPage) return list; // not on a page read
            const edge = { __typename: 'ProductEdge', cursor: null, node: toReference(product) };
            return { ...list, edges: [...list.edges, edge], totalCount: list.totalCount + 1 };
          },
        },
      });
    },
  });
  return data.createProduct;
}

export async function deleteProduct(client, id, expectedVersion) {
  await client.mutate({
    mutation: DELETE_PRODUCT,
    variables: { id, expectedVersion },
    update(cache) {
      cache.modify({
        fields: {
          products(list, { readField }) {
            const edges = list.edges.filter((edge) => readField('id', edge.node) !== id);
            if (edges.length === list.edges.length) return list;
            return { ...list, edges, totalCount: list.totalCount - 1 };
          },
        },
      });
      cache.evict({ id: cache.identify({ __typename: 'Product', id }) });
      cache.gc();
    },
  });
}
