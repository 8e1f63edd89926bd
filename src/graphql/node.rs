//! The `Node` interface: anything with a globally unique id, which `node` and `nodes` look up
//! with the same guards as the typed fields that return it.

use std::collections::{BTreeSet, HashMap};

use async_graphql::{ID, Interface};
use uuid::Uuid;

use super::{
    guard::{AccountReach, NodeReach},
    parse_id,
    types::{Account, Product},
};
use crate::{
    error::{AppError, AppResult},
    state::AppState,
};

/// The most ids one `nodes` call takes.
pub const MAX_NODES: usize = 100;

/// Something with a globally unique id: a product or an account. `node(id:)` refetches it.
#[derive(Interface, Clone)]
#[graphql(field(name = "id", ty = "ID", desc = "Unique among every `Node`."))]
pub enum Node {
    Product(Product),
    Account(Account),
}

/// The node behind each of `ids`, in the same order: null for an id that names nothing, or
/// something `reach` does not let the caller see (the two look the same). Ids are UUIDs,
/// unique across products and accounts, so the products are looked up first, then the
/// remaining ids among the accounts: at most one query each, whatever the number of ids.
///
/// # Errors
/// `BAD_USER_INPUT` on `ids` for more than [`MAX_NODES`]; internal on a database failure.
pub async fn resolve(
    state: &AppState,
    reach: NodeReach,
    ids: &[ID],
) -> AppResult<Vec<Option<Node>>> {
    if ids.len() > MAX_NODES {
        return Err(AppError::bad_input(
            "ids",
            format!("at most {MAX_NODES} ids at a time"),
        ));
    }
    let wanted: Vec<Option<Uuid>> = ids.iter().map(parse_id).collect();
    let distinct: Vec<Uuid> = wanted
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found: HashMap<Uuid, Node> = HashMap::new();
    if reach.products && !distinct.is_empty() {
        for row in state.catalog.find_many(&distinct).await? {
            found.insert(row.id, Node::Product(row.into()));
        }
    }
    let accounts: Vec<Uuid> = match reach.accounts {
        AccountReach::All => distinct
            .iter()
            .copied()
            .filter(|id| !found.contains_key(id))
            .collect(),
        AccountReach::Own(own) if distinct.contains(&own) => vec![own],
        AccountReach::Own(_) | AccountReach::None => Vec::new(),
    };
    for row in state.accounts.find_all(&accounts).await? {
        found.insert(row.id, Node::Account(row.into()));
    }
    Ok(wanted
        .into_iter()
        .map(|id| id.and_then(|id| found.get(&id).cloned()))
        .collect())
}
