// The queries of a product list page as a frontend sends them: one document, the order and
// filter the user picked as variables, and pages forward (`first`/`after`) and backward
// (`last`/`before`). A cursor belongs to its order and filter: when the user changes either,
// start again from the first page.
export const PRODUCT_LIST_PAGE = `
  query ProductListPage(
    $first: Int
    $after: String
    $last: Int
    $before: String
    $orderBy: [ProductOrder!]
    $filter: ProductFilter
  ) {
    products(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy, filter: $filter) {
      totalCount
      edges { cursor node { id name price stock version updatedAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
`;

// "Price: high to low", in stock, between 5 and 50.
export const priceHighToLow = {
  orderBy: [{ field: 'PRICE', direction: 'DESC' }],
  filter: { inStock: true, priceMin: '5.00', priceMax: '50.00' },
};

// The variables of each page of a list (`list`: its orderBy and filter).
export const firstPage = (list, size = 20) => ({ ...list, first: size });
export const nextPage = (list, pageInfo, size = 20) => ({ ...list, first: size, after: pageInfo.endCursor });
export const previousPage = (list, pageInfo, size = 20) => ({ ...list, last: size, before: pageInfo.startCursor });
export const lastPage = (list, size = 20) => ({ ...list, last: size });

// A search box: the best matches first, as the user types ("tea" finds "Teapot").
export const SEARCH_BOX = `
  query SearchBox($text: String!) {
    products(first: 8, filter: { search: $text }, orderBy: [{ field: RELEVANCE, direction: DESC }]) {
      edges { node { id name price } }
    }
  }
`;

// A cart's products by id, in the cart's order; null for one that is gone.
export const CART = `
  query Cart($ids: [ID!]!) {
    nodes(ids: $ids) { id ... on Product { name price stock version } }
  }
`;
