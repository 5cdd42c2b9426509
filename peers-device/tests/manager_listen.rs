//! `ConnectionManager::serve`: one accept loop for any `Listener`, with the
//! incoming handshakes of every listener bounded in one place.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use peers_sdk::socket::{Listener, Locality, TransportKind};
use peers_sdk::{BoxSocket, CloseReason};
use tokio::sync::{Mutex, mpsc};

/// Hands out the sockets pushed into a channel, counting what was taken.
struct ChannelListener {
    sockets: Mutex<mpsc::Receiver<BoxSocket>>,
    taken: AtomicUsize,
}

#[async_trait]
impl Listener for ChannelListener {
    fn name(&self) -> &str {
        "channel"
    }

    async fn accept(&self) -> Option<BoxSocket> {
        let socket = self.sockets.lock().await.recv().await?;
        self.taken.fetch_add(1, Ordering::SeqCst);
        Some(socket)
    }
}

fn channel_listener() -> (mpsc::Sender<BoxSocket>, Arc<ChannelListener>) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Arc::new(ChannelListener { sockets: Mutex::new(rx), taken: AtomicUsize::new(0) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_every_listener_are_bounded_and_a_stalled_one_frees_its_slot() {
    let (a, b) = (node("a"), node_with("b", |c| c.max_handshakes = 2));
    let (push_one, one) = channel_listener();
    let (push_two, two) = channel_listener();
    let _serving = (b.manager.serve(one.clone()), b.manager.serve(two.clone()));

    // Two clients that open a socket and never say a word, one per listener:
    // they hold both handshake slots.
    let mut silent = Vec::new();
    for push in [&push_one, &push_two] {
        let (client, server) = pair(TransportKind::Memory, Locality::Lan);
        push.send(server).await.unwrap();
        silent.push(client);
    }
    let taken = || one.taken.load(Ordering::SeqCst) + two.taken.load(Ordering::SeqCst);
    wait_until("two handshakes to start", || taken() == 2).await;

    // A real device on the first listener waits: no slot is free.
    let (client, server) = pair(TransportKind::Memory, Locality::Lan);
    push_one.send(server).await.unwrap();
    let manager = a.manager.clone();
    let mut dial = tokio::spawn(async move { manager.dial(client, Some(b.id)).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut dial).await.is_err(),
        "a third handshake ran while two were running"
    );

    // The stalled client on the *other* listener goes away: its slot goes to the
    // waiting socket at once (well before the 10 s handshake timeout would free
    // the other one), not to the idle second listener.
    silent[1].close(CloseReason::normal("bye")).await;
    let dialed = tokio::time::timeout(Duration::from_secs(5), dial).await.expect("the waiting handshake got no slot");
    assert_eq!(dialed.unwrap().unwrap(), b.id);
    wait_until("b to hold the connection", || b.manager.status().active(&a.id).is_some()).await;
    silent[0].close(CloseReason::normal("bye")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_listener_is_let_go_and_takes_nothing_more() {
    let b = node("b");
    let (push, listener) = channel_listener();
    let serving = b.manager.serve(listener.clone());
    assert_eq!(serving.name(), "channel");
    serving.stop().await;
    // Only the test holds the listener now: the loop let go of it.
    assert_eq!(Arc::strong_count(&listener), 1);
    let (_client, server) = pair(TransportKind::Memory, Locality::Lan);
    push.send(server).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listener.taken.load(Ordering::SeqCst), 0);
}
