//! The signaling state conformance suite: every limit, answer, expiry
//! notice, replacement and guess limit of `docs/signaling.md`, played
//! through real clients against one backend. A backend is a [`Factory`]
//! that starts servers for a configuration: one in-process server with the
//! memory store ([`local`]), or two instances sharing a real `redis-server`
//! ([`redis`]), a cluster node holding every slot ([`redis_cluster_node`]) or
//! a three-node Redis Cluster ([`redis_cluster`]). [`state_conformance_tests!`] instantiates every check for a
//! factory, in the style of `peers_sdk::socket_conformance_tests!`.
//!
//! Each check dials `first` and `second`: the same server for the local
//! backend, two instances for Redis (so each rule is also shown to hold
//! across instances).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use peers_sdk::{CloseCode, DeviceKeys};
use peers_signaling::sessions::{SessionKind, SessionState};
use peers_signaling::{
    ClientEvent, ErrorCode, Outcome, OutgoingSignal, ServerConfig, SignalKind, SignalingClient, SignalingClientOptions,
    SignalingServer,
};
use serde_json::{Value, json};

use super::wire::WireClient;
use super::{event, incoming, keys, nothing, quota, refusal, session_event, wrong_code};

/// Servers of one backend under test (and what must live as long as they do).
pub struct Backend {
    servers: Vec<SignalingServer>,
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl Backend {
    fn url(server: &SignalingServer) -> String {
        server.url().expect("bound")
    }

    /// The URL devices dial first.
    pub fn first(&self) -> String {
        Self::url(&self.servers[0])
    }

    /// The URL devices dial second (the other instance, if there are two).
    pub fn second(&self) -> String {
        Self::url(self.servers.last().expect("a server"))
    }

    fn first_addr(&self) -> SocketAddr {
        self.servers[0].local_addr().expect("bound")
    }

    fn second_addr(&self) -> SocketAddr {
        self.servers.last().expect("a server").local_addr().expect("bound")
    }
}

/// Starts a backend's servers for a configuration.
pub type Factory = fn(ServerConfig) -> Pin<Box<dyn Future<Output = Backend> + Send>>;

/// One server, the memory store.
pub fn local(config: ServerConfig) -> Pin<Box<dyn Future<Output = Backend> + Send>> {
    Box::pin(async move { Backend { servers: vec![super::server(config).await], _keep: None } })
}

/// Two instances sharing `redis` (kept running as long as the backend).
#[cfg(feature = "redis")]
async fn sharing<R: super::redis_server::SharedRedis + Send + 'static>(redis: R, mut config: ServerConfig) -> Backend {
    config.store = super::redis_server::redis_config(&redis).store;
    let (one, two) = super::redis_server::pair(config).await;
    Backend { servers: vec![one, two], _keep: Some(Box::new(redis)) }
}

/// Two instances sharing a `redis-server` started for the check.
#[cfg(feature = "redis")]
pub fn redis(config: ServerConfig) -> Pin<Box<dyn Future<Output = Backend> + Send>> {
    Box::pin(async move { sharing(super::redis_server::RedisServer::start().await, config).await })
}

/// Two instances sharing a `redis-server` cluster node that holds every
/// hash slot: Redis refuses any script call touching two slots.
#[cfg(feature = "redis")]
pub fn redis_cluster_node(config: ServerConfig) -> Pin<Box<dyn Future<Output = Backend> + Send>> {
    Box::pin(async move { sharing(super::redis_server::RedisServer::start_cluster_node().await, config).await })
}

/// Two instances sharing a Redis Cluster of three nodes (the cluster
/// client: slot routing, sharded pub/sub).
#[cfg(feature = "redis")]
pub fn redis_cluster(config: ServerConfig) -> Pin<Box<dyn Future<Output = Backend> + Send>> {
    Box::pin(async move { sharing(super::redis_server::RedisCluster::start().await, config).await })
}

/// Instantiates every check of the suite for `$factory`.
#[allow(unused_macros)]
macro_rules! state_conformance_tests {
    ($factory:path) => {
        state_conformance_tests!(@each $factory;
            queue_bounds_per_recipient_and_overall,
            queue_quotas_per_sending_device_and_address,
            expiry_notices_reach_the_sender_online_or_later,
            a_second_registration_replaces_the_first,
            sessions_create_join_close_and_reopen,
            a_registering_creator_hears_of_joins_it_missed,
            wrong_codes_lock_a_session_and_guesses_are_rate_limited,
            session_quotas_per_device_and_address,
            relay_credit_and_close,
            relay_quotas_per_device_and_address,
            presence_subscription_quotas);
    };
    (@each $factory:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                common::conformance::$check($factory).await;
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use state_conformance_tests;

async fn dial(url: &str, name: &str) -> (DeviceKeys, SignalingClient) {
    let keys = keys(name);
    let client = SignalingClient::connect(url, &keys, SignalingClientOptions::default()).await.expect("registers");
    (keys, client)
}

fn outcome_event(event: &ClientEvent) -> Option<(String, Outcome)> {
    match event {
        ClientEvent::Outcome { id, outcome, .. } => Some((id.clone(), outcome.clone())),
        _ => None,
    }
}

async fn queued(from: &SignalingClient, to: &DeviceKeys, body: Value) {
    let sent = from.send(&to.device_id(), SignalKind::Ready, body).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
}

async fn queue_full(from: &SignalingClient, to: &DeviceKeys, which: &str) {
    let refused = from.send(&to.device_id(), SignalKind::Ready, json!({})).await.unwrap();
    let Outcome::Rejected { reason } = refused.outcome else { panic!("{refused:?}") };
    assert_eq!(reason.code, ErrorCode::QueueFull, "{reason}");
    assert!(reason.message.contains(which), "{which:?} in {reason}");
}

/// The recipient's bound and the overall bound answer `queue_full` naming
/// the bound; what was queued is delivered in order, and nothing more.
pub async fn queue_bounds_per_recipient_and_overall(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.queue.per_device_messages = 3;
    config.queue.total_messages = 5;
    let backend = make(config).await;
    let (_, alice) = dial(&backend.first(), "alice").await;
    let (bob, carol) = (keys("bob"), keys("carol"));
    for n in 0..3 {
        queued(&alice, &bob, json!({"n": n})).await;
    }
    queue_full(&alice, &bob, "recipient's queue").await;
    for n in 0..2 {
        queued(&alice, &carol, json!({"n": n})).await;
    }
    queue_full(&alice, &carol, "server's queue").await;
    let bob_client =
        SignalingClient::connect(&backend.second(), &bob, SignalingClientOptions::default()).await.expect("registers");
    let mut bob_in = bob_client.incoming().unwrap();
    for n in 0..3 {
        let got = incoming(&mut bob_in).await;
        assert_eq!((got.body, got.queued), (json!({"n": n}), true));
    }
    nothing(&mut bob_in, Duration::from_millis(300)).await;
}

/// The per-sending-device and per-address quotas (`quota_exceeded`), with
/// another address unaffected and a delivery giving the quota back.
pub async fn queue_quotas_per_sending_device_and_address(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.queue.per_sender_messages = quota::PER_SENDER;
    config.queue.per_address_messages = quota::PER_ADDRESS;
    let backend = make(config).await;
    quota::run(backend.first_addr(), backend.second_addr()).await;
}

/// An undelivered message expires with a notice to its sender while it is
/// online, or when it registers again (on any instance); a time to live of
/// 0 to an offline device answers `expired` at once.
pub async fn expiry_notices_reach_the_sender_online_or_later(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.queue.default_ttl = Duration::from_millis(300);
    let backend = make(config).await;
    let (alice_keys, alice) = dial(&backend.first(), "alice").await;
    let mut alice_events = alice.events().unwrap();
    let bob = keys("bob");
    let sent = alice.send(&bob.device_id(), SignalKind::Offer, json!({"sdp": "x"})).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Expired));

    let zero = OutgoingSignal::new(bob.device_id(), SignalKind::Cancel, json!({})).with_ttl(Duration::ZERO);
    assert_eq!(alice.send_signal(zero).await.unwrap().outcome, Outcome::Expired);

    let later = alice.send(&bob.device_id(), SignalKind::Offer, json!({"sdp": "y"})).await.unwrap();
    alice.close().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let alice = SignalingClient::connect(&backend.second(), &alice_keys, SignalingClientOptions::default())
        .await
        .expect("registers again");
    let mut alice_events = alice.events().unwrap();
    assert_eq!(event(&mut alice_events, outcome_event).await, (later.id, Outcome::Expired));
}

/// A second registration of a device replaces the first: the old
/// connection hears `replaced` and is closed, signals reach the new one.
pub async fn a_second_registration_replaces_the_first(make: Factory) {
    let backend = make(ServerConfig::in_memory()).await;
    let (device, old) = dial(&backend.first(), "device").await;
    let mut old_events = old.events().unwrap();
    let new = SignalingClient::connect(&backend.second(), &device, SignalingClientOptions::default())
        .await
        .expect("registers again");
    let mut new_in = new.incoming().unwrap();
    let notice = event(&mut old_events, |e| match e {
        ClientEvent::Notice(rejection) => Some(rejection.clone()),
        _ => None,
    })
    .await;
    assert_eq!(notice.code, ErrorCode::Replaced, "{notice}");
    let (_, alice) = dial(&backend.first(), "alice").await;
    let sent = alice.send(&device.device_id(), SignalKind::Offer, json!({"sdp": "z"})).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut new_in).await.id, sent.id);
}

/// A session by code: one receiver (case-insensitive code), only a party's
/// token closes it, both parties hear of each change; a `pake` session is
/// reopened by its creator and joined again.
pub async fn sessions_create_join_close_and_reopen(make: Factory) {
    let backend = make(ServerConfig::in_memory()).await;
    let (_, sender) = dial(&backend.first(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, receiver) = dial(&backend.second(), "receiver").await;
    let mut receiver_events = receiver.events().unwrap();
    let (_, intruder) = dial(&backend.second(), "intruder").await;

    let created = sender.create_session(None).await.unwrap();
    assert_eq!(refusal(sender.join_session(&created.code).await), ErrorCode::SelfAddressed);
    let joined = receiver.join_session(&created.code.to_lowercase()).await.unwrap();
    assert_eq!((&joined.transfer_id, &joined.sender), (&created.transfer_id, sender.device_id()));
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionTaken);
    assert_eq!(refusal(intruder.close_session(&created.transfer_id, "guess").await), ErrorCode::BadToken);
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let (_, state, reason) = event(&mut receiver_events, session_event).await;
    assert_eq!((state, reason.as_deref()), (SessionState::Closed, Some("closed by the sender")));
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionClosed);

    let pake = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    let first = receiver.join_session(&pake.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    assert_eq!(refusal(receiver.reopen_session(&pake.transfer_id, &first.receiver_token).await), ErrorCode::BadToken);
    sender.reopen_session(&pake.transfer_id, &pake.sender_token).await.unwrap();
    intruder.join_session(&pake.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    sender.close_session(&pake.transfer_id, &pake.sender_token).await.unwrap();
    assert_eq!(refusal(sender.reopen_session(&pake.transfer_id, &pake.sender_token).await), ErrorCode::SessionClosed);
}

/// A join while its session's creator is not registered (a server restart)
/// is told to the creator when it registers again, on any instance, as the
/// `joined` it would have heard live; a session waiting for its receiver, a
/// reopened one and the receiver's side are told nothing.
pub async fn a_registering_creator_hears_of_joins_it_missed(make: Factory) {
    let backend = make(ServerConfig::in_memory()).await;
    let (sender_keys, sender) = dial(&backend.first(), "sender").await;
    let (receiver_keys, receiver) = dial(&backend.second(), "receiver").await;
    let waiting = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    let pake = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    sender.close().await;
    let joined = receiver.join_session(&pake.code).await.unwrap();
    receiver.close().await;

    let again = |url: String, keys: DeviceKeys| async move {
        let client = SignalingClient::connect(&url, &keys, SignalingClientOptions::default()).await.expect("registers");
        let events = client.events().unwrap();
        (client, events)
    };
    let (sender, mut sender_events) = again(backend.second(), sender_keys.clone()).await;
    let told = event(&mut sender_events, |e| match e {
        ClientEvent::Session { transfer_id, state, peer, .. } => Some((transfer_id.clone(), *state, *peer)),
        _ => None,
    })
    .await;
    assert_eq!(told, (joined.transfer_id.clone(), SessionState::Joined, Some(receiver_keys.device_id())));
    nothing(&mut sender_events, Duration::from_millis(300)).await;
    let (_receiver, mut receiver_events) = again(backend.first(), receiver_keys).await;
    nothing(&mut receiver_events, Duration::from_millis(300)).await;

    // A reopened session waits for a join again: nothing to tell.
    sender.reopen_session(&pake.transfer_id, &pake.sender_token).await.unwrap();
    sender.close().await;
    let (sender, mut sender_events) = again(backend.first(), sender_keys).await;
    nothing(&mut sender_events, Duration::from_millis(300)).await;
    sender.close_session(&waiting.transfer_id, &waiting.sender_token).await.unwrap();
}

/// Wrong secrets for a code lock its session (its creator is told, the
/// right code then finds it closed), and code guesses from one address are
/// limited per minute on every instance together.
pub async fn wrong_codes_lock_a_session_and_guesses_are_rate_limited(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.sessions.joins_per_minute_per_ip = 6;
    let backend = make(config).await;
    let (_, sender) = dial(&backend.first(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, guesser) = dial(&backend.second(), "guesser").await;
    let created = sender.create_session(None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(refusal(guesser.join_session(&wrong_code(&created.code)).await), ErrorCode::SessionNotFound);
    }
    let (_, state, reason) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Closed);
    assert!(reason.unwrap_or_default().contains("locked"));
    let (_, late) = dial(&backend.first(), "late").await;
    assert_eq!(refusal(late.join_session(&created.code).await), ErrorCode::SessionClosed);
    // Malformed codes are refused as such, and count against the address.
    assert_eq!(refusal(guesser.join_session("not a code").await), ErrorCode::BadRequest);
    // Six joins a minute from this address: five used (3 + late's 1 + 1).
    assert_eq!(refusal(guesser.join_session("0000-000000").await), ErrorCode::SessionNotFound);
    assert_eq!(refusal(guesser.join_session("0000-000000").await), ErrorCode::RateLimited);
    assert_eq!(refusal(late.join_session("0000-000000").await), ErrorCode::RateLimited, "the limit is per address");
}

/// Session creation rates and live sessions per device and per address;
/// closed sessions never count against the live cap.
pub async fn session_quotas_per_device_and_address(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.sessions.creates_per_minute_per_device = quota::SESSION_CREATES_PER_DEVICE;
    config.sessions.creates_per_minute_per_ip = quota::SESSION_CREATES_PER_ADDRESS;
    config.sessions.per_address = quota::SESSIONS_LIVE_PER_ADDRESS;
    config.sessions.max_sessions = quota::MAX_SESSIONS;
    let backend = make(config).await;
    quota::sessions(backend.first_addr(), backend.second_addr()).await;
}

/// A relay carries frames within the credit the receiver granted; a frame
/// beyond it closes the relay for both parties (`ProtocolError`), and a
/// party's close reaches the other one.
pub async fn relay_credit_and_close(make: Factory) {
    let backend = make(ServerConfig::in_memory()).await;
    let source = std::net::IpAddr::from([127, 0, 0, 1]);
    let (ka, kb) = (keys("relay-a"), keys("relay-b"));
    let mut a = WireClient::registered(backend.first_addr(), source, &ka).await;
    let mut b = WireClient::registered(backend.second_addr(), source, &kb).await;
    let open = |peer: &DeviceKeys| json!({"peer": peer.device_id().to_string()});
    assert_eq!(a.request("relay-open", open(&kb)).await["state"], json!("waiting"));
    let opened = b.request("relay-open", open(&ka)).await;
    let relay = opened["relay"].as_u64().unwrap_or_else(|| panic!("not open: {opened}"));
    // `a` sends once it is told, as a client does: with two instances the
    // relay reaches `a`'s instance a moment after `b` hears of it.
    a.expect("relay-open").await.expect("told");
    let window = peers_signaling::protocol::RELAY_WINDOW_FRAMES;
    let frame = json!({"relay": relay, "data": peers_signaling::protocol::encode(b"x")});
    for _ in 0..window {
        a.emit("relay-frame", &frame).await;
    }
    for _ in 0..window {
        assert_eq!(b.expect("relay-frame").await.expect("a frame")["relay"], json!(relay));
    }
    // One more than the receiver granted.
    a.emit("relay-frame", &frame).await;
    for party in [&mut a, &mut b] {
        let closed = party.expect("relay-close").await.expect("closed");
        assert_eq!(closed["relay"], json!(relay), "{closed}");
        let code: CloseCode = serde_json::from_value(closed["code"].clone()).unwrap();
        assert_eq!(code, CloseCode::ProtocolError, "{closed}");
    }

    // A second relay, closed by one party: the other hears it.
    assert_eq!(a.request("relay-open", open(&kb)).await["state"], json!("waiting"));
    let relay = b.request("relay-open", open(&ka)).await["relay"].as_u64().expect("open");
    a.expect("relay-open").await.expect("told");
    a.emit("relay-close", &json!({"relay": relay, "code": "Normal", "message": "done"})).await;
    let closed = b.expect("relay-close").await.expect("closed");
    assert_eq!((closed["relay"].clone(), closed["message"].clone()), (json!(relay), json!("done")), "{closed}");
}

/// Relays per device and per address, another address unaffected, ended
/// relays giving the quota back.
pub async fn relay_quotas_per_device_and_address(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.relay.per_device = quota::RELAYS_PER_DEVICE;
    config.relay.per_address = quota::RELAYS_PER_ADDRESS;
    let backend = make(config).await;
    quota::relays(backend.first_addr(), backend.second_addr()).await;
}

/// Presence subscriptions per connection and per address (made-up ids
/// count), another address unaffected, closing giving the share back.
pub async fn presence_subscription_quotas(make: Factory) {
    let mut config = ServerConfig::in_memory();
    config.max_subscriptions = quota::SUBSCRIPTIONS_PER_CONNECTION;
    config.max_subscriptions_per_address = quota::SUBSCRIPTIONS_PER_ADDRESS;
    let backend = make(config).await;
    // Counted per instance in Redis mode (docs/signaling.md section 14): one.
    quota::subscriptions(backend.first_addr()).await;
}
