//! raxe-adapters: the SIEM vocabulary and one module per destination.
//!
//! (design note: see the module docs; filled in as the modules land)

pub mod adapter;
pub mod outcome;
pub mod request;
pub mod transport;
