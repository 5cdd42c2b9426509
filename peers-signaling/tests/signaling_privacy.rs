//! Privacy by trust at the server: a device that registered with an allow
//! list is, to every device not on it, a device that does not exist (no
//! presence, signals answered and expired like those to a made-up id, relay
//! requests that never pair), while the devices on it get everything as
//! before. Run against one instance (in process, and the binary with its
//! SQLite store across a SIGKILL) and two instances sharing a real
//! `redis-server`.

mod common;

use std::time::Duration;

use common::*;
use peers_sdk::{DeviceId, DeviceKeys};
use peers_signaling::protocol::{self, AllowList};
use peers_signaling::{
    ClientEvent, Outcome, OutgoingSignal, ServerConfig, SignalKind, SignalingClient, SignalingClientOptions,
};
use serde_json::json;

/// How long a test listens for something that must not come.
const QUIET: Duration = Duration::from_millis(1500);

async fn connect_allowing(url: &str, keys: &DeviceKeys, allow: Option<AllowList>) -> SignalingClient {
    let mut options = SignalingClientOptions::default();
    options.allow = allow;
    SignalingClient::connect(url, keys, options).await.expect("client registers")
}

/// One in-process instance keeping nothing on disk.
async fn memory_server() -> peers_signaling::SignalingServer {
    let mut config = ServerConfig::default();
    config.store = peers_signaling::store::StoreConfig::Memory;
    server(config).await
}

fn list(devices: &[DeviceId]) -> AllowList {
    AllowList::new(devices.iter().copied()).unwrap()
}

fn offer(n: usize) -> serde_json::Value {
    json!({"sdp": format!("v=0 {n}")})
}

async fn send_ttl(from: &SignalingClient, to: &DeviceId, ttl: Duration) -> (String, Outcome) {
    let mut signal = OutgoingSignal::new(*to, SignalKind::Offer, offer(0));
    signal.ttl = Some(ttl);
    let sent = from.send_signal(signal).await.unwrap();
    (sent.id, sent.outcome)
}

fn presence(device: DeviceId, online: bool) -> impl Fn(&ClientEvent) -> Option<()> {
    move |event| match event {
        ClientEvent::Presence { device: d, online: o } if *d == device && *o == online => Some(()),
        _ => None,
    }
}

fn outcome_of(id: String) -> impl Fn(&ClientEvent) -> Option<(DeviceId, Outcome)> {
    move |event| match event {
        ClientEvent::Outcome { id: got, to, outcome } if *got == id => Some((*to, outcome.clone())),
        _ => None,
    }
}

fn queued(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Queued { .. })
}

/// No presence event about `device` arrives for [`QUIET`].
async fn no_presence_of(events: &mut tokio::sync::mpsc::Receiver<ClientEvent>, device: DeviceId) {
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let ClientEvent::Presence { device: d, .. } = &event {
            assert_ne!(*d, device, "a stranger heard {event:?}");
        }
    }
}

/// The whole story, with the device, the stranger and the friend registered
/// at the three URLs (one instance, or different instances of one Redis).
/// A watcher's view follows every list change at once.
async fn a_stranger_sees_nothing(device_url: &str, stranger_url: &str, friend_url: &str) {
    let (friend_keys, stranger_keys, device_keys) = (keys("friend"), keys("stranger"), keys("device"));
    let (friend_id, stranger_id, device_id) =
        (friend_keys.device_id(), stranger_keys.device_id(), device_keys.device_id());
    let made_up = keys("nobody").device_id();
    let friend = connect_allowing(friend_url, &friend_keys, None).await;
    let stranger = connect_allowing(stranger_url, &stranger_keys, None).await;
    let (mut friend_events, mut stranger_events) = (friend.events().unwrap(), stranger.events().unwrap());
    assert!(stranger.subscribe_presence(&[device_id, made_up]).await.unwrap().is_empty());
    assert!(friend.subscribe_presence(&[device_id]).await.unwrap().is_empty());

    // Presence: the friend sees it come online, the stranger never does.
    let device = connect_allowing(device_url, &device_keys, Some(list(&[friend_id]))).await;
    let mut device_in = device.incoming().unwrap();
    event(&mut friend_events, presence(device_id, true)).await;
    no_presence_of(&mut stranger_events, device_id).await;
    assert!(stranger.subscribe_presence(&[device_id, made_up]).await.unwrap().is_empty());
    assert_eq!(friend.subscribe_presence(&[device_id]).await.unwrap(), vec![device_id]);

    // Signals: the stranger's get what signals to a made-up id get.
    let ttl = Duration::from_secs(60);
    let (_, to_device) = send_ttl(&stranger, &device_id, ttl).await;
    let (_, to_nobody) = send_ttl(&stranger, &made_up, ttl).await;
    assert!(queued(&to_device) && queued(&to_nobody), "{to_device:?} / {to_nobody:?}");
    assert_eq!(send_ttl(&stranger, &device_id, Duration::ZERO).await.1, Outcome::Expired);
    assert_eq!(send_ttl(&stranger, &made_up, Duration::ZERO).await.1, Outcome::Expired);
    // A queued one expires like any other, and its notice names the device.
    let (id, outcome) = send_ttl(&stranger, &device_id, Duration::from_millis(300)).await;
    assert!(queued(&outcome));
    assert_eq!(event(&mut stranger_events, outcome_of(id)).await, (device_id, Outcome::Expired));
    // The friend's are delivered, and they are all the device gets.
    let sent = friend.send(&device_id, SignalKind::Offer, offer(7)).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    let got = incoming(&mut device_in).await;
    assert_eq!((got.from, got.id), (friend_id, sent.id));
    nothing(&mut device_in, QUIET).await;

    // Relays: a stranger's request never pairs, even with the device asking
    // for it; the friend's does.
    let wait = Duration::from_secs(2);
    let (from_stranger, to_stranger) =
        tokio::join!(stranger.open_relay(&device_id, wait), device.open_relay(&stranger_id, wait));
    assert!(from_stranger.is_err() && to_stranger.is_err(), "a relay with a stranger opened");
    let (from_friend, to_friend) =
        tokio::join!(friend.open_relay(&device_id, PROMPT), device.open_relay(&friend_id, PROMPT));
    let (from_friend, to_friend) = (from_friend.expect("friend's relay"), to_friend.expect("device's relay"));
    drop((from_friend, to_friend));

    // The device lets the stranger in: it sees the device, its signals arrive.
    device.set_allow(Some(&list(&[friend_id, stranger_id]))).await.unwrap();
    event(&mut stranger_events, presence(device_id, true)).await;
    assert_eq!(stranger.subscribe_presence(&[device_id]).await.unwrap(), vec![device_id]);
    let sent = stranger.send(&device_id, SignalKind::Offer, offer(8)).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut device_in).await.id, sent.id);

    // Nobody: the friend is a stranger now.
    device.set_allow(Some(&AllowList::default())).await.unwrap();
    event(&mut friend_events, presence(device_id, false)).await;
    event(&mut stranger_events, presence(device_id, false)).await;
    assert!(friend.subscribe_presence(&[device_id]).await.unwrap().is_empty());
    assert!(queued(&send_ttl(&friend, &device_id, ttl).await.1));

    // No list: everyone, as without one.
    device.set_allow(None).await.unwrap();
    event(&mut friend_events, presence(device_id, true)).await;
    event(&mut stranger_events, presence(device_id, true)).await;
    assert_eq!(friend.subscribe_presence(&[device_id]).await.unwrap(), vec![device_id]);
    assert_eq!(send_ttl(&friend, &device_id, ttl).await.1, Outcome::Delivered);
    assert_eq!(incoming(&mut device_in).await.from, friend_id);
    nothing(&mut device_in, QUIET).await;

    // A new connection of the device with another list replaces the old
    // one: the device stays online, and the friend loses sight of it.
    let replacing = connect_allowing(device_url, &device_keys, Some(list(&[stranger_id]))).await;
    event(&mut friend_events, presence(device_id, false)).await;
    assert!(friend.subscribe_presence(&[device_id]).await.unwrap().is_empty());
    assert_eq!(stranger.subscribe_presence(&[device_id]).await.unwrap(), vec![device_id]);
    drop(device);

    // Offline: what a stranger queues meanwhile is never handed over when
    // the device registers again with its list; it expires, and its sender
    // hears so; the friend's is delivered.
    replacing.close().await;
    event(&mut stranger_events, presence(device_id, false)).await;
    let (strangers, outcome) = send_ttl(&stranger, &device_id, Duration::from_secs(2)).await;
    assert!(queued(&outcome));
    let (friends, outcome) = send_ttl(&friend, &device_id, ttl).await;
    assert!(queued(&outcome));
    let device = connect_allowing(device_url, &device_keys, Some(list(&[friend_id]))).await;
    let mut device_in = device.incoming().unwrap();
    let got = incoming(&mut device_in).await;
    assert_eq!((got.id, got.from, got.queued), (friends.clone(), friend_id, true));
    assert_eq!(event(&mut friend_events, outcome_of(friends)).await, (device_id, Outcome::Delivered));
    assert_eq!(event(&mut stranger_events, outcome_of(strangers)).await, (device_id, Outcome::Expired));
    nothing(&mut device_in, QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_answers_a_stranger_as_if_the_device_did_not_exist() {
    let server = memory_server().await;
    let url = server.url().unwrap();
    a_stranger_sees_nothing(&url, &url, &url).await;
}

/// A registration's list is covered by its signature; `"allow"` requests
/// are signed over the connection's challenge and a growing counter, so a
/// recorded one is refused on its own connection and on any other.
async fn allow_requests_cannot_be_forged_or_replayed(url: &str) {
    let (device, friend) = (keys("device"), keys("friend"));
    let allow = list(&[friend.device_id()]);

    // A list the signature does not cover.
    let mut raw = RawClient::connect(url).await;
    let mut unsigned = RawClient::registration(&device, &raw.nonce, &raw.origin);
    unsigned["allow"] = json!(allow.to_wire());
    assert_eq!(code(&raw.request("register", unsigned).await), "bad_signature");

    let mut raw = RawClient::connect(url).await;
    let challenge = protocol::Challenge { v: protocol::PROTOCOL_VERSION, nonce: protocol::encode(&raw.nonce) };
    let register = protocol::answer_challenge_allowing(&device, &challenge, url, Some(&allow)).unwrap();
    let reply = raw.request("register", serde_json::to_value(register).unwrap()).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");

    let (own, origin) = (raw.nonce, raw.origin.clone());
    let sign = |nonce: &[u8; protocol::NONCE_LEN], counter: u64, allow: Option<&AllowList>| {
        serde_json::to_value(protocol::sign_allow(&device, nonce, &origin, counter, allow)).unwrap()
    };
    let everyone = sign(&own, 1, None);
    let reply = raw.request("allow", everyone.clone()).await;
    assert_eq!((reply["ok"].clone(), reply["allowed"].clone()), (json!(true), json!(null)), "{reply}");
    // The same request again, or an older counter: refused.
    assert_eq!(code(&raw.request("allow", everyone).await), "bad_signature");
    let nobody = AllowList::default();
    assert_eq!(code(&raw.request("allow", sign(&own, 1, Some(&nobody))).await), "bad_signature");
    // Signed for another connection's challenge: refused.
    assert_eq!(code(&raw.request("allow", sign(&[7; protocol::NONCE_LEN], 2, Some(&nobody))).await), "bad_signature");
    // A list other than the one signed: refused.
    let mut swapped = sign(&own, 2, Some(&nobody));
    swapped["allow"] = json!(allow.to_wire());
    assert_eq!(code(&raw.request("allow", swapped).await), "bad_signature");
    // A refusal leaves the connection registered; a later counter works.
    let reply = raw.request("allow", sign(&own, 9, Some(&allow))).await;
    assert_eq!((reply["ok"].clone(), reply["allowed"].clone()), (json!(true), json!(1)), "{reply}");
    // Too many devices.
    let mut many = sign(&own, 10, None);
    many["allow"] = json!((0..=protocol::MAX_ALLOW).map(|n| format!("{n:040x}")).collect::<Vec<_>>());
    assert_eq!(code(&raw.request("allow", many).await), "too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_refuses_forged_and_replayed_allow_requests() {
    let server = memory_server().await;
    allow_requests_cannot_be_forged_or_replayed(&server.url().unwrap()).await;
}

/// The binary with its SQLite store: a stranger's message queued for an
/// offline device before a SIGKILL is not handed to it after the restart,
/// when it registers with a list that does not name the stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_applies_to_messages_queued_before_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let (mut server, url) = start_binary(&["--bind", "127.0.0.1:0", "--data-dir", data_dir]).await;
    let (friend_keys, stranger_keys, device_keys) = (keys("friend"), keys("stranger"), keys("device"));
    let device_id = device_keys.device_id();
    let friend = connect_allowing(&url, &friend_keys, None).await;
    let stranger = connect_allowing(&url, &stranger_keys, None).await;
    let (strangers, outcome) = send_ttl(&stranger, &device_id, Duration::from_secs(6)).await;
    assert!(queued(&outcome));
    let (friends, outcome) = send_ttl(&friend, &device_id, Duration::from_secs(60)).await;
    assert!(queued(&outcome));
    server.kill().await.unwrap();
    drop((friend, stranger));

    let (_server, url) = start_binary(&["--bind", "127.0.0.1:0", "--data-dir", data_dir]).await;
    let device = connect_allowing(&url, &device_keys, Some(list(&[friend_keys.device_id()]))).await;
    let mut device_in = device.incoming().unwrap();
    let got = incoming(&mut device_in).await;
    assert_eq!((got.id, got.from), (friends, friend_keys.device_id()));
    nothing(&mut device_in, QUIET).await;
    // The stranger, back later, hears its message expired (never delivered).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stranger = connect_allowing(&url, &stranger_keys, None).await;
    let mut events = stranger.events().unwrap();
    assert_eq!(event(&mut events, outcome_of(strangers)).await, (device_id, Outcome::Expired));
    nothing(&mut device_in, Duration::ZERO).await;
}

#[cfg(feature = "redis")]
mod redis_mode {
    use super::common::redis_server::{RedisServer, pair, redis_config};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_answer_a_stranger_as_if_the_device_did_not_exist() {
        let redis = RedisServer::start().await;
        let (one, two) = pair(redis_config(&redis)).await;
        let (one, two) = (one.url().unwrap(), two.url().unwrap());
        // The device on one instance, the stranger and the friend on the other.
        a_stranger_sees_nothing(&one, &two, &two).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_refuse_forged_and_replayed_allow_requests() {
        let redis = RedisServer::start().await;
        let (one, _two) = pair(redis_config(&redis)).await;
        allow_requests_cannot_be_forged_or_replayed(&one.url().unwrap()).await;
    }

    /// Messages a stranger queued while the device was offline move to the
    /// shadow queue when it registers with its list (`queue.lua`), on any
    /// instance, and expire there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_messages_from_strangers_are_never_taken() {
        let redis = RedisServer::start().await;
        let (one, two) = pair(redis_config(&redis)).await;
        let (one, two) = (one.url().unwrap(), two.url().unwrap());
        let (friend_keys, stranger_keys, device_keys) = (keys("friend"), keys("stranger"), keys("device"));
        let device_id = device_keys.device_id();
        let stranger = connect_allowing(&one, &stranger_keys, None).await;
        let friend = connect_allowing(&one, &friend_keys, None).await;
        let mut stranger_events = stranger.events().unwrap();
        // More than one take batch (128) from the stranger, then the friend's.
        for _ in 0..130 {
            assert!(queued(&send_ttl(&stranger, &device_id, Duration::from_secs(3)).await.1));
        }
        let (friends, outcome) = send_ttl(&friend, &device_id, Duration::from_secs(60)).await;
        assert!(queued(&outcome));
        let device = connect_allowing(&two, &device_keys, Some(list(&[friend_keys.device_id()]))).await;
        let mut device_in = device.incoming().unwrap();
        assert_eq!(incoming(&mut device_in).await.id, friends);
        // The drain goes on past the stranger's: the friend's next arrives
        // (queued if the drain is not done yet, then taken by it).
        let sent = friend.send(&device_id, SignalKind::Offer, offer(1)).await.unwrap();
        assert!(matches!(sent.outcome, Outcome::Delivered | Outcome::Queued { .. }), "{sent:?}");
        assert_eq!(incoming(&mut device_in).await.id, sent.id);
        let (_, expired) = event(&mut stranger_events, |e| match e {
            ClientEvent::Outcome { to, outcome, .. } => Some((*to, outcome.clone())),
            _ => None,
        })
        .await;
        assert_eq!(expired, Outcome::Expired);
        nothing(&mut device_in, QUIET).await;
    }
}
