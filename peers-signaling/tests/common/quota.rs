//! The per-sender queue quotas, played the same way against one server or
//! two instances sharing Redis: one address queues to made-up ids until its
//! devices' and its own quotas refuse, while a sender on another address keeps
//! queueing, and a delivered message gives its sender's quota back.

use std::net::{IpAddr, SocketAddr};

use peers_sdk::DeviceKeys;
use serde_json::{Value, json};

use super::keys;
use super::wire::WireClient;

/// Most messages one sending device may have queued in [`run`].
pub const PER_SENDER: usize = 4;
/// Most messages the senders of one address may have queued in [`run`].
pub const PER_ADDRESS: usize = 6;

const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const LEGIT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

fn target(name: &str, n: usize) -> DeviceKeys {
    keys(&format!("{name}-target-{n}"))
}

async fn queue(client: &mut WireClient, to: &DeviceKeys, n: usize) -> Value {
    let request = json!({
        "id": format!("m{n}"),
        "to": to.device_id().to_string(),
        "kind": "ready",
        "body": {},
        "ttl_ms": 600_000,
    });
    client.request("signal", request).await
}

fn queued(reply: &Value) {
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(reply["outcome"], json!("queued"), "{reply}");
}

fn over_quota(reply: &Value, whose: &str) {
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert_eq!(reply["error"]["code"], json!("quota_exceeded"), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(whose), "{reply}");
}

/// Plays the scenario; the attacker's two devices dial `first` and `second`
/// (the same server, or two instances), the legitimate sender `second`.
/// The server runs with `PER_SENDER` and `PER_ADDRESS` as its message quotas.
pub async fn run(first: SocketAddr, second: SocketAddr) {
    let mut one = WireClient::registered(first, ATTACKER, &keys("quota-one")).await;
    let mut two = WireClient::registered(second, ATTACKER, &keys("quota-two")).await;
    let recipient = target("one", 0);
    queued(&queue(&mut one, &recipient, 0).await);
    for n in 1..PER_SENDER {
        queued(&queue(&mut one, &target("one", n), n).await);
    }
    over_quota(&queue(&mut one, &target("one", PER_SENDER), PER_SENDER).await, "this device");
    for n in 0..PER_ADDRESS - PER_SENDER {
        queued(&queue(&mut two, &target("two", n), n).await);
    }
    over_quota(&queue(&mut two, &target("two", 99), 99).await, "this address");

    // Another address keeps the queue: its sender queues up to its own quota.
    let mut legit = WireClient::registered(second, LEGIT, &keys("quota-legit")).await;
    for n in 0..PER_SENDER {
        queued(&queue(&mut legit, &target("legit", n), n).await);
    }

    // A recipient comes online and takes its message: the device's and the
    // address's quotas get it back.
    let (mut taker, challenge) = WireClient::dial(first, LEGIT).await.expect("dial");
    let register =
        peers_signaling::protocol::answer_challenge(&recipient, &challenge, &format!("http://{first}")).unwrap();
    let reply = taker.request("register", serde_json::to_value(register).unwrap()).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(reply["queued"], json!(1), "the recipient takes its queued message: {reply}");
    queued(&queue(&mut one, &target("one", 50), 50).await);
    over_quota(&queue(&mut two, &target("two", 51), 51).await, "this address");
}

/// Sessions one device may create per minute in [`sessions`].
pub const SESSION_CREATES_PER_DEVICE: u32 = 3;
/// Sessions the devices of one address may create per minute in [`sessions`].
pub const SESSION_CREATES_PER_ADDRESS: u32 = 5;
/// Live sessions the devices of one address may hold in [`sessions`].
pub const SESSIONS_LIVE_PER_ADDRESS: usize = 2;
/// Live sessions the server holds in [`sessions`].
pub const MAX_SESSIONS: usize = 5;

fn refused(reply: &Value, code: &str, whose: &str) {
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert_eq!(reply["error"]["code"], json!(code), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(whose), "{whose:?} in {reply}");
}

fn ok(reply: &Value) {
    assert_eq!(reply["ok"], json!(true), "{reply}");
}

async fn create(client: &mut WireClient) -> Value {
    client.request("session-create", json!({})).await
}

async fn close(client: &mut WireClient, created: &Value) {
    let request = json!({"transfer_id": created["transfer_id"], "token": created["sender_token"]});
    ok(&client.request("session-close", request).await);
}

/// Session quotas: one address's devices hold at most
/// `SESSIONS_LIVE_PER_ADDRESS` live sessions and create at most
/// `SESSION_CREATES_PER_ADDRESS` a minute (a device `SESSION_CREATES_PER_DEVICE`),
/// closed sessions never count against the live cap (`MAX_SESSIONS`), and a
/// device on another address keeps creating. The attacker's devices dial
/// `first` and `second`, the legitimate one `second`.
pub async fn sessions(first: SocketAddr, second: SocketAddr) {
    let mut one = WireClient::registered(first, ATTACKER, &keys("sessions-one")).await;
    let mut two = WireClient::registered(second, ATTACKER, &keys("sessions-two")).await;
    let mut legit = WireClient::registered(second, LEGIT, &keys("sessions-legit")).await;
    let mut live = Vec::new();
    for _ in 0..SESSIONS_LIVE_PER_ADDRESS {
        let created = create(&mut one).await;
        ok(&created);
        live.push(created);
    }
    refused(&create(&mut two).await, "quota_exceeded", "this address");
    let first_legit = create(&mut legit).await;
    ok(&first_legit);
    // Closed sessions give the address's live quota back at once.
    for created in &live {
        close(&mut one, created).await;
    }
    let created = create(&mut two).await;
    ok(&created);
    close(&mut two, &created).await;
    ok(&create(&mut one).await);
    // Five creations from the address this minute (one refused): no more.
    refused(&create(&mut two).await, "rate_limited", "this address");
    refused(&create(&mut one).await, "rate_limited", "this address");
    // The legitimate device creates up to its own rate: with three closed
    // sessions kept, live ones only count against MAX_SESSIONS.
    // (It closes them: its address holds two live ones at most too.)
    for _ in 1..SESSION_CREATES_PER_DEVICE {
        let created = create(&mut legit).await;
        ok(&created);
        close(&mut legit, &created).await;
    }
    refused(&create(&mut legit).await, "rate_limited", "this device");
}

/// Relays one device may be a party of in [`relays`].
pub const RELAYS_PER_DEVICE: usize = 2;
/// Relays the devices of one address may be parties of in [`relays`].
pub const RELAYS_PER_ADDRESS: usize = 3;

async fn relay_open(client: &mut WireClient, peer: &DeviceKeys) -> Value {
    client.request("relay-open", json!({"peer": peer.device_id().to_string()})).await
}

/// Opens a relay between `a` and `b` (each asks for the other).
async fn pair_relay(a: (&mut WireClient, &DeviceKeys), b: (&mut WireClient, &DeviceKeys)) -> Value {
    let waiting = relay_open(a.0, b.1).await;
    ok(&waiting);
    assert_eq!(waiting["state"], json!("waiting"), "{waiting}");
    relay_open(b.0, a.1).await
}

/// Relay quotas: a device is a party of at most `RELAYS_PER_DEVICE` relays,
/// the devices of one address of at most `RELAYS_PER_ADDRESS` (a relay
/// between two of them counts once), a pair on another address still
/// opens one, and relays that end give the quota back. The attacker's
/// devices dial `first` and `second` alternately, the legitimate pair `second`.
pub async fn relays(first: SocketAddr, second: SocketAddr) {
    let names: Vec<DeviceKeys> = (0..4).map(|n| keys(&format!("relays-{n}"))).collect();
    let mut attackers = Vec::new();
    for (n, key) in names.iter().enumerate() {
        attackers.push(WireClient::registered(if n % 2 == 0 { first } else { second }, ATTACKER, key).await);
    }
    let [mut a0, mut a1, mut a2, mut a3]: [WireClient; 4] =
        attackers.try_into().unwrap_or_else(|_| unreachable!("four attackers"));
    let opened = pair_relay((&mut a0, &names[0]), (&mut a1, &names[1])).await;
    assert_eq!(opened["state"], json!("open"), "{opened}");
    let opened = pair_relay((&mut a2, &names[2]), (&mut a0, &names[0])).await;
    assert_eq!(opened["state"], json!("open"), "{opened}");
    // a0 is a party of two relays: its own request is refused.
    refused(&relay_open(&mut a0, &names[3]).await, "quota_exceeded", "this device");
    let opened = pair_relay((&mut a1, &names[1]), (&mut a2, &names[2])).await;
    assert_eq!(opened["state"], json!("open"), "{opened}");
    // Three relays among the address's devices: a fourth is refused.
    refused(&relay_open(&mut a3, &names[1]).await, "quota_exceeded", "this address");

    // A pair on another address opens its relay.
    let (l0, l1) = (keys("relays-legit-0"), keys("relays-legit-1"));
    let mut legit0 = WireClient::registered(second, LEGIT, &l0).await;
    let mut legit1 = WireClient::registered(second, LEGIT, &l1).await;
    let opened = pair_relay((&mut legit0, &l0), (&mut legit1, &l1)).await;
    assert_eq!(opened["state"], json!("open"), "{opened}");

    // a0 leaves: its two relays end and the address's quota comes back.
    drop(a0);
    let reopened = async {
        loop {
            let waiting = relay_open(&mut a3, &names[1]).await;
            if waiting["ok"] == json!(true) {
                let opened = relay_open(&mut a1, &names[3]).await;
                if opened["ok"] == json!(true) {
                    return opened;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let opened = tokio::time::timeout(std::time::Duration::from_secs(5), reopened).await.expect("quota back");
    assert_eq!(opened["state"], json!("open"), "{opened}");
}

/// Devices one connection may watch in [`subscriptions`].
pub const SUBSCRIPTIONS_PER_CONNECTION: usize = 4;
/// Devices the connections of one address may watch in [`subscriptions`].
pub const SUBSCRIPTIONS_PER_ADDRESS: usize = 6;

/// `n` made-up device ids.
fn made_up(n: usize) -> Vec<String> {
    (0..n).map(|n| keys(&format!("made-up-{n}")).device_id().to_string()).collect()
}

async fn subscribe(client: &mut WireClient, devices: &[String]) -> Value {
    client.request("subscribe", json!({"devices": devices})).await
}

/// Presence subscription quotas on one instance: made-up ids count, a
/// connection watches at most `SUBSCRIPTIONS_PER_CONNECTION`, the
/// connections of one address `SUBSCRIPTIONS_PER_ADDRESS` together, another
/// address keeps watching, and a closed connection gives its share back.
pub async fn subscriptions(server: SocketAddr) {
    let mut one = WireClient::registered(server, ATTACKER, &keys("watch-one")).await;
    let mut two = WireClient::registered(server, ATTACKER, &keys("watch-two")).await;
    let ids = made_up(SUBSCRIPTIONS_PER_ADDRESS + SUBSCRIPTIONS_PER_CONNECTION + 3);
    let (first, rest) = ids.split_at(SUBSCRIPTIONS_PER_CONNECTION);
    ok(&subscribe(&mut one, first).await);
    refused(&subscribe(&mut one, &rest[..1]).await, "too_many_subscriptions", "at most");
    let left = SUBSCRIPTIONS_PER_ADDRESS - SUBSCRIPTIONS_PER_CONNECTION;
    let (second, rest) = rest.split_at(left);
    ok(&subscribe(&mut two, second).await);
    refused(&subscribe(&mut two, &rest[..1]).await, "quota_exceeded", "this address");
    let mut legit = WireClient::registered(server, LEGIT, &keys("watch-legit")).await;
    ok(&subscribe(&mut legit, first).await);
    // Unsubscribing gives the quota back, and so does closing.
    ok(&two.request("unsubscribe", json!({"devices": &second[..1]})).await);
    ok(&subscribe(&mut two, &rest[..1]).await);
    refused(&subscribe(&mut two, &rest[1..2]).await, "quota_exceeded", "this address");
    drop(one);
    let watched = async {
        loop {
            if subscribe(&mut two, &rest[1..2]).await["ok"] == json!(true) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), watched)
        .await
        .expect("the closed connection's share is back");
}
