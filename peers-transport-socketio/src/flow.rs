//! Credit-based flow control: the one sans-IO implementation lives in
//! [`peers_sdk::flow`], with the argument for why the exchange cannot stall.
//!
//! socket.io has no backpressure of its own: socketioxide runs message handlers
//! without blocking the connection's read loop, and our client hands every event
//! to a synchronous callback. So the receiver bounds what it buffers by granting
//! credit (its window goes out in `"peers:hello"`, grants in `"peers:credit"` or
//! piggybacked on frames; see `wire`), and the sender never sends beyond it.

pub(crate) use peers_sdk::flow::{Credit, RecvWindow, SendCredit};
