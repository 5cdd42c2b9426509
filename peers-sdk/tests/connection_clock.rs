//! Handshakes over the in-memory pair with a fake clock: a connection forms
//! exactly when the two clocks agree within the timestamp window.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{
    Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, HandshakeError, MemorySocket, TrustLevel,
};
use proptest::prelude::*;

const BASE: u64 = 1_800_000_000_000;
const WINDOW: Duration = Duration::from_secs(60);

fn config(user: &str, now: u64) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(user).unwrap());
    let mut config = ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted);
    config.handshake.timestamp_window = WINDOW;
    config.clock = Arc::new(move || now);
    config
}

async fn handshake(skew_ms: i64) -> (Result<Connection, Error>, Result<Connection, Error>) {
    let (a, b) = MemorySocket::pair(8, 64 * 1024);
    tokio::join!(
        Connection::connect(Box::new(a), config("alice", BASE), None),
        Connection::accept(Box::new(b), config("bob", BASE.saturating_add_signed(skew_ms))),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn connects_exactly_when_clocks_agree_within_the_window(skew_ms in -120_000i64..120_000) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (dialer, acceptor) = runtime.block_on(handshake(skew_ms));
        let window_ms = WINDOW.as_millis() as u64;
        if skew_ms.unsigned_abs() <= window_ms {
            prop_assert!(dialer.is_ok() && acceptor.is_ok(), "skew {skew_ms} ms refused: {:?} / {:?}", dialer.err(), acceptor.err());
        } else {
            let stale = matches!(acceptor, Err(Error::Handshake(HandshakeError::StaleTimestamp { skew_ms: s, window_ms: w }))
                if s == skew_ms.unsigned_abs() && w == window_ms);
            prop_assert!(stale, "skew {} ms accepted or refused for another reason: {:?}", skew_ms, acceptor.err());
            prop_assert!(dialer.is_err());
        }
    }
}
