//! An application's handlers registered with `on_connection` answer the very
//! first call on a new connection, in both directions, with no retry: the
//! manager installs them before the peer is told the connection is ready. Many
//! rounds over a real socket.io transport on loopback, each a fresh pair of
//! devices whose first calls race the other side's adoption of the connection.

use peers_device::ManagerEvent;
use peers_tests::device::{ECHO, TestDevice, WAIT};

/// Rounds of the race; each is a new pair of devices and a new connection.
const ROUNDS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_registered_at_connect_time_answer_the_first_call_both_ways() {
    for round in 0..ROUNDS {
        let mut listener = TestDevice::new("listener");
        let dialer = TestDevice::new("dialer");
        let url = listener.listen().await;
        let dialer_id = dialer.id();

        // The listener calls the dialer the moment it has admitted the connection,
        // while the dialer may still be finishing its side.
        let mut events = listener.manager.events();
        let manager = listener.manager.clone();
        let from_listener = tokio::spawn(async move {
            let connected = async {
                loop {
                    if let Ok(ManagerEvent::Connected { device, .. }) = events.recv().await
                        && device == dialer_id
                    {
                        return;
                    }
                }
            };
            tokio::time::timeout(WAIT, connected).await.expect("the listener sees the connection");
            let connection = manager.connection(&dialer_id).expect("the connection just admitted");
            connection.emit::<_, u64>(ECHO, &round).await
        });

        // The dialer calls the listener as soon as its dial returns.
        let peer = dialer.dial_once(&url, Some(listener.id())).await.expect("the dial succeeds");
        let connection = dialer.manager.connection(&peer).expect("the connection just dialed");
        let answer: u64 = connection
            .emit(ECHO, &round)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the dialer's first call failed: {e}"));
        assert_eq!(answer, round);

        let answer = from_listener
            .await
            .expect("the listener's caller")
            .unwrap_or_else(|e| panic!("round {round}: the listener's first call failed: {e}"));
        assert_eq!(answer, round);

        dialer.manager.shutdown().await;
        listener.stop().await;
    }
}
