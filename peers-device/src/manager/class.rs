//! Connection classes: how good a path to a device is, best first. The type
//! lives in `peers-sdk` ([`peers_sdk::dial`]), so a transport crate can name a
//! class without depending on this crate; it is re-exported here at its old path.

pub use peers_sdk::dial::ConnectionClass;
