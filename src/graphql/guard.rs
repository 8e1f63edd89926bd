//! The adapter between async-graphql and the policy: the one guard on every protected field,
//! and what introspection shows each caller. The decisions are `authz`'s.

use async_graphql::{Context, Guard};

use super::ContextExt;
use crate::{
    auth::Viewer,
    authz::{Permission, Reach, Rows, Subject},
    error::{AppError, AuthFailure},
};

/// The one guard on every protected field: lets the call through when the policy grants the
/// caller's role the permission.
///
/// No token, or a bad one, is `UNAUTHENTICATED`; a signed-in caller the policy refuses is
/// `FORBIDDEN`.
pub struct Can(pub Permission);

impl Guard for Can {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        Ok(rows(ctx, self.0).map(drop)?)
    }
}

/// The rows `permission` covers for the caller, per the policy in force: every row, or, under
/// an ownership rule, those the caller owns (checked once the row is loaded).
///
/// # Errors
/// As [`Can`]: no token, or a bad one, is `UNAUTHENTICATED`; a signed-in caller the policy
/// refuses is `FORBIDDEN`.
pub fn rows(ctx: &Context<'_>, permission: Permission) -> Result<Rows, AppError> {
    let viewer = ctx.viewer();
    let reach = ctx.state().authz.reach(Subject::of(viewer), permission);
    match (viewer, reach) {
        (Viewer::InvalidToken(reason), _) => Err(AppError::access_refused(*reason)),
        (Viewer::Anonymous, Some(Reach::Any)) | (Viewer::Account { .. }, Some(Reach::Any)) => {
            Ok(Rows::Any)
        }
        (Viewer::Account { id, .. }, Some(Reach::Own)) => Ok(Rows::OwnedBy(*id)),
        // Nobody owns anything without signing in.
        (Viewer::Anonymous, _) => Err(AppError::access_refused(AuthFailure::Missing)),
        (Viewer::Account { .. }, None) => {
            let (object, action) = permission.object_action();
            Err(AppError::Forbidden { object, action })
        }
    }
}

/// Which nodes `node` and `nodes` may return to a caller: the same decisions as the typed
/// fields that return them.
#[derive(Clone, Copy, Debug)]
pub struct NodeReach {
    /// Products, as `product(id:)` (`product read`).
    pub products: bool,
    pub accounts: AccountReach,
}

/// Which accounts a caller may look up by id.
#[derive(Clone, Copy, Debug)]
pub enum AccountReach {
    /// Any account, as `users` lists them (`user list`).
    All,
    /// Only their own, as `account` shows it (`account read`).
    Own(uuid::Uuid),
    None,
}

/// What `node`/`nodes` may return to the caller, per the policy in force. What it may not see
/// resolves to null, exactly as an id that names nothing: no error tells it apart.
///
/// # Errors
/// `UNAUTHENTICATED` for a bad token, as every guarded field.
pub fn node_reach(ctx: &Context<'_>) -> Result<NodeReach, AppError> {
    let viewer = ctx.viewer();
    if let Viewer::InvalidToken(reason) = viewer {
        return Err(AppError::access_refused(*reason));
    }
    let authz = &ctx.state().authz;
    let allows = |permission| authz.allows(Subject::of(viewer), permission);
    let accounts = match viewer {
        _ if allows(Permission::UserList) => AccountReach::All,
        Viewer::Account { id, .. } if allows(Permission::AccountRead) => AccountReach::Own(*id),
        _ => AccountReach::None,
    };
    Ok(NodeReach {
        products: allows(Permission::ProductRead),
        accounts,
    })
}

/// Whether the caller's role may use `permission`: what introspection shows them, from the
/// same decisions the guard enforces (can-see equals can-do). A bad token sees what an
/// anonymous caller sees.
pub fn can_see(ctx: &Context<'_>, permission: Permission) -> bool {
    ctx.state()
        .authz
        .allows(Subject::of(ctx.viewer()), permission)
}

/// `visible` functions for `#[graphql(visible = "…")]`, one per permission, each deciding
/// by [`can_see`].
pub mod visible {
    use async_graphql::Context;

    use super::{Permission, can_see};

    macro_rules! visible_fns {
        ($($name:ident => $permission:ident),* $(,)?) => {
            $(
                pub fn $name(ctx: &Context<'_>) -> bool {
                    can_see(ctx, Permission::$permission)
                }
            )*
        };
    }

    visible_fns! {
        account_read => AccountRead,
        account_update => AccountUpdate,
        session_manage => SessionManage,
        product_read => ProductRead,
        product_create => ProductCreate,
        product_update => ProductUpdate,
        product_delete => ProductDelete,
        product_read_creator => ProductReadCreator,
        user_list => UserList,
        user_set_role => UserSetRole,
        user_deactivate => UserDeactivate,
        user_reactivate => UserReactivate,
        account_delete => AccountDelete,
        role_list => RoleList,
        audit_read => AuditRead,
        policy_read => PolicyRead,
        policy_manage => PolicyManage,
        product_adjust_stock => ProductAdjustStock,
    }
}
