//! Roles, token scopes, and the permission each route declares.
//!
//! - A user has one [`Role`]: `viewer` reads, `user` also changes the fleet (agents,
//!   later alert rules), `admin` also manages users, every API token and reads the
//!   audit log.
//! - An API token has scopes ([`Scope`]): `read`, `write`, `admin`; a higher scope
//!   includes the lower ones. A token never does more than its owner's *current*
//!   role allows, so lowering a role lowers every token of that user at once.
//! - Each route declares one [`Access`]; [`allows`] decides.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's role, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but the users, the tokens of others and the audit log.
    Viewer,
    /// A viewer who may also add, change and remove agents.
    User,
    /// Everything, including users, all API tokens and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::User, Role::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The highest scope a token of this role may carry.
    pub const fn max_scope(self) -> Scope {
        match self {
            Role::Viewer => Scope::Read,
            Role::User => Scope::Write,
            Role::Admin => Scope::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role \"{s}\": choose admin, user or viewer"))
    }
}

/// An API token's scope, lowest first; each includes the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read routes.
    Read,
    /// Read routes and changes to the fleet.
    Write,
    /// Everything the owner's role allows.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown scope \"{s}\": choose read, write or admin"))
    }
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, signed in or not (login, refresh, the OpenAPI document).
    Public,
    /// A signed-in person: a JWT access token, not an API token (password change,
    /// minting API tokens).
    Session,
    /// Role viewer or higher; tokens need scope `read`.
    Read,
    /// Role user or higher; tokens need scope `write`.
    Write,
    /// Role admin; tokens need scope `admin`.
    Admin,
}

impl Access {
    /// How the docs' route table names it.
    pub const fn describe(self) -> &'static str {
        match self {
            Access::Public => "anyone",
            Access::Session => "any signed-in user (JWT only, not an API token)",
            Access::Read => "viewer, user, admin; token scope read",
            Access::Write => "user, admin; token scope write",
            Access::Admin => "admin; token scope admin",
        }
    }

    /// The role a caller needs at least (none for public routes).
    pub const fn min_role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::Session | Access::Read => Some(Role::Viewer),
            Access::Write => Some(Role::User),
            Access::Admin => Some(Role::Admin),
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token from a login.
    Session,
    /// An API token with its id and highest scope.
    ApiToken { id: i64, scope: Scope },
}

/// Whether a caller with `role` (current, from the database) and `credential` may
/// use a route that requires `access`.
pub fn allows(access: Access, role: Role, credential: Credential) -> bool {
    let needed_scope = match access {
        Access::Public => return true,
        Access::Session => return matches!(credential, Credential::Session),
        Access::Read => Scope::Read,
        Access::Write => Scope::Write,
        Access::Admin => Scope::Admin,
    };
    let role_ok = access.min_role().is_none_or(|r| role >= r);
    let scope_ok = match credential {
        Credential::Session => true,
        Credential::ApiToken { scope, .. } => scope >= needed_scope,
    };
    role_ok && scope_ok
}

/// The highest of `scopes` (a token's scopes as stored), if any is known.
pub fn highest_scope<S: AsRef<str>>(scopes: &[S]) -> Option<Scope> {
    scopes.iter().filter_map(|s| s.as_ref().parse().ok()).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_scopes_order_and_parse() {
        assert!(Role::Viewer < Role::User && Role::User < Role::Admin);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!(
            "editor"
                .parse::<Role>()
                .unwrap_err()
                .contains("admin, user or viewer")
        );
        assert_eq!(highest_scope(&["read", "admin"]), Some(Scope::Admin));
        assert_eq!(highest_scope::<&str>(&[]), None);
    }

    #[test]
    fn a_token_never_exceeds_its_owners_role() {
        let admin_token = Credential::ApiToken {
            id: 1,
            scope: Scope::Admin,
        };
        // A viewer's admin-scoped token (role lowered after it was made) only reads.
        assert!(allows(Access::Read, Role::Viewer, admin_token));
        assert!(!allows(Access::Write, Role::Viewer, admin_token));
        assert!(!allows(Access::Admin, Role::User, admin_token));
        let read = Credential::ApiToken {
            id: 2,
            scope: Scope::Read,
        };
        assert!(allows(Access::Read, Role::Admin, read));
        assert!(!allows(Access::Write, Role::Admin, read));
        assert!(!allows(Access::Session, Role::Admin, read));
        assert!(allows(Access::Session, Role::Viewer, Credential::Session));
        assert!(allows(Access::Admin, Role::Admin, Credential::Session));
        assert!(!allows(Access::Admin, Role::User, Credential::Session));
        assert!(allows(Access::Public, Role::Viewer, read));
    }
}
