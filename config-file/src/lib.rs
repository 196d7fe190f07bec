//! # pga-config
//!
//! Configuration files as `pga-agent` and `pga-federator` read them
//! (`agent.toml`, `federator.toml`): the parse against a [`Schema`] with errors that
//! say where (line, column, key, the table above) and every unknown key with the
//! valid ones and the one probably meant; the [`Problem`]s of `validate()`, each
//! naming the key and the fix; quantities with a unit suffix ([`units`]); and the
//! PEM certificates, keys and revocation lists that keys name ([`pem`]), reloaded
//! while the program runs when they change or on SIGHUP ([`reload`]).

pub mod pem;
mod problem;
pub mod reload;
mod schema;
mod text;
pub mod units;

pub use problem::{
    MAX_NAME_LEN, Problem, Severity, check_report, has_errors, is_valid_name, push_problems,
};
pub use schema::{Schema, closest, keys_set, parse, schema_keys, uncomment_settings};
pub use text::{
    ConfigError, Location, UnknownKey, fields_of, join_key, key_at, location, snippet,
    syntax_message, table_header_before,
};
