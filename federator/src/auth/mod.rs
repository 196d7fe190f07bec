//! Authentication and authorization logic, free of I/O: password hashing
//! ([`password`]), JWT access and refresh tokens ([`jwt`]), API tokens
//! ([`token`]), login throttling ([`throttle`]) and roles, scopes and route
//! permissions ([`roles`]). The HTTP layer (`crate::http`) and the repositories
//! (`crate::db`) use them.

pub mod jwt;
pub mod password;
pub mod roles;
pub mod throttle;
pub mod token;

pub use roles::{Access, Credential, Role, Scope, allows};
