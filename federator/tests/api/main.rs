//! The HTTP API end to end, on one throwaway cluster with a database per test.

mod attacks;
mod audit;
mod docs;
mod roles;
mod support;
