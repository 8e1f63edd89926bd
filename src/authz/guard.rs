use async_graphql::{Context, Guard};

use super::{Permission, Subject};
use crate::{auth::Viewer, error::AppError, graphql::ContextExt};

/// The one guard on every protected field: lets the call through when the policy grants the
/// caller's role the permission.
///
/// No token, or a bad one, is `UNAUTHENTICATED`; a signed-in caller the policy refuses is
/// `FORBIDDEN`.
pub struct Can(pub Permission);

impl Guard for Can {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let authz = &ctx.state().authz;
        match *ctx.viewer() {
            Viewer::InvalidToken => Err(AppError::Unauthenticated(
                "the access token is invalid or expired; sign in again",
            )
            .into()),
            Viewer::Anonymous if authz.allows(Subject::Anonymous, self.0) => Ok(()),
            Viewer::Anonymous => Err(AppError::Unauthenticated(
                "sign in to do this: send `Authorization: Bearer <accessToken>`",
            )
            .into()),
            Viewer::Account { role, .. } if authz.allows(Subject::Role(role), self.0) => Ok(()),
            Viewer::Account { .. } => Err(AppError::Forbidden.into()),
        }
    }
}
