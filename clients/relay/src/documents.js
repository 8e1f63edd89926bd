// The Relay documents of a product list page, as a Relay app writes them (babel-plugin-relay
// turns each graphql`…` into an import of its artifact in __generated__/). relay-compiler
// checks them against ../../schema.graphql; relay.test.mjs runs the artifacts.
const { graphql } = require('relay-runtime');

// One product as a card shows it; refetchable through `node(id:)`.
graphql`
  fragment ProductCard_product on Product @refetchable(queryName: "ProductCardRefetchQuery") {
    id
    name
    price
    stock
    version
    updatedAt
  }
`;

// The list, one page at a time: usePaginationFragment's fragment.
graphql`
  fragment ProductList_query on Query
  @argumentDefinitions(
    count: { type: "Int", defaultValue: 20 }
    cursor: { type: "String" }
    orderBy: { type: "[ProductOrder!]" }
    filter: { type: "ProductFilter" }
  )
  @refetchable(queryName: "ProductListPaginationQuery") {
    products(first: $count, after: $cursor, orderBy: $orderBy, filter: $filter)
    @connection(key: "ProductList_products", filters: ["orderBy", "filter"]) {
      __id
      totalCount
      edges {
        node {
          id
          ...ProductCard_product
        }
      }
    }
  }
`;

graphql`
  query ProductListPageQuery($count: Int, $orderBy: [ProductOrder!], $filter: ProductFilter) {
    ...ProductList_query @arguments(count: $count, orderBy: $orderBy, filter: $filter)
  }
`;

// A created product goes to the end of the list (the default order: oldest first).
graphql`
  mutation ProductListCreateMutation($input: CreateProductInput!, $connections: [ID!]!) {
    createProduct(input: $input) @appendNode(connections: $connections, edgeTypeName: "ProductEdge") {
      id
      ...ProductCard_product
    }
  }
`;

// A deleted product leaves every list named in $connections. (Given both @deleteEdge and
// @deleteRecord on this field, relay-compiler 21 kept only @deleteEdge, without a warning: the
// mutation's updater takes the record out of the store.)
graphql`
  mutation ProductListDeleteMutation($id: ID!, $expectedVersion: Int, $connections: [ID!]!) {
    deleteProduct(id: $id, expectedVersion: $expectedVersion) @deleteEdge(connections: $connections)
  }
`;
